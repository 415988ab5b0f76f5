"""Starting one row's job: ``start_job`` called with the row's job options applied to the ``POST /jobs`` it sends,
the budget and the claim checked, a lost create's job found instead of a second one created.
"""
