"""The Flask app of one local backend: openeo-driver's dummy backend plus lifecycle jobs, OIDC, control API.

Imported by ``local_backend.server`` only after its socket is bound (importing openeo-driver takes
seconds, and a port clash should fail at once).
"""

from __future__ import annotations

import logging
import re
from typing import Any

import flask
import openeo_driver.config.load
import openeo_driver.views
from openeo_driver.config import OpenEoBackendConfig
from openeo_driver.dummy.dummy_backend import DummyBackendImplementation
from openeo_driver.errors import (
    FeatureUnsupportedException,
    JobNotFoundException,
    OpenEOApiException,
    TokenInvalidException,
)
from openeo_driver.users.auth import HttpAuthHandler
from openeo_driver.users.oidc import OidcProvider
from openeo_driver.views import EndpointMetadata
from werkzeug.exceptions import HTTPException

from local_backend.assets import LocalUrlSigner, add_checksums
from local_backend.catalog import LocalCatalog
from local_backend.control import BackendState, control_blueprint, static_blueprint
from local_backend.credentials import OIDC_PROVIDER_ID, OIDC_PUBLIC_CLIENT_ID, valid_basic_auth
from local_backend.faults import FaultMiddleware, api_relative_path
from local_backend.jobs import LifecycleBatchJobs
from local_backend.log_pages import install_log_pages
from local_backend.oidc import LocalOidcProvider
from local_backend.oidc_tokens import InvalidToken, TokenSigner, load_or_create_key
from local_backend.parameters import processing_parameters

_log = logging.getLogger("local_backend")
_RULE_PREFIX = re.compile(r"^/openeo(?:/<version>)?(?=/|$)")
_RULE_PARAM = re.compile(r"<(?:[^:>]+:)?([^>]+)>")


def _local_auth_handler(oidc: LocalOidcProvider) -> type[HttpAuthHandler]:
    """openeo-driver's auth handler, changed in two ways for a provider that lives in this process.

    - Tokens of the local provider are checked in-process (the same code the ``/oidc/userinfo`` endpoint
      runs) instead of by an HTTP call back into this server, which would double every request.
    - No 15-minute cache of bearer token -> user: an expired access token must be refused at once with
      403 TokenInvalid, which is what makes the openeo client refresh.
    """

    class LocalAuthHandler(HttpAuthHandler):
        def get_user_from_bearer_token(self, request: flask.Request) -> Any:
            return self._get_user_from_bearer_token(bearer=self.get_auth_token(request, "Bearer"))

        def _get_userinfo(self, oidc_provider: OidcProvider, access_token: str) -> dict:
            if oidc_provider.issuer != oidc.issuer:
                return super()._get_userinfo(oidc_provider, access_token)
            try:
                return oidc.userinfo(access_token)
            except InvalidToken:
                raise TokenInvalidException() from None

    return LocalAuthHandler


class LocalBackendImplementation(DummyBackendImplementation):
    """The dummy backend (collections, processes, validation, UDPs) with lifecycle batch jobs and the
    production collection names of :mod:`local_backend.catalog`."""

    def __init__(self, config: OpenEoBackendConfig, batch_jobs: LifecycleBatchJobs) -> None:
        super().__init__(config=config)
        self.batch_jobs = batch_jobs
        self.catalog = LocalCatalog()
        driver_validate = self.processing.validate

        def validate(process_graph: dict, env: Any = None) -> list[dict]:
            """``POST /validation``: openeo-driver's dry run (unknown processes, collections, ...), then the graphs
            this backend refuses at ``POST /jobs`` (``reject_process_graphs``), so both answers agree."""
            refused = batch_jobs.refusal(process_graph)
            errors = list(driver_validate(process_graph=process_graph, env=env))
            return errors + ([{"code": "ProcessGraphInvalid", "message": refused}] if refused else [])

        self.processing.validate = validate

    def processing_parameters(self) -> dict[str, Any]:
        """``GET /processing_parameters``: the job options this backend declares (``parameters.py``)."""
        return processing_parameters()


def _backend_config(name: str, issuer: str, url_signer: LocalUrlSigner) -> OpenEoBackendConfig:
    return OpenEoBackendConfig(
        id=f"local-backend-{name}",
        capabilities_title=f"Local openEO backend {name}",
        capabilities_description=(
            "openeo-driver dummy backend with a wall-clock job lifecycle (airflow-provider-openeo tests)."
        ),
        processing_facility=f"local-{name}",
        enable_basic_auth=True,
        valid_basic_auth=valid_basic_auth,
        oidc_providers=[
            OidcProvider(
                id=OIDC_PROVIDER_ID,
                issuer=issuer,
                title=f"Local OIDC ({name})",
                scopes=["openid"],
                default_clients=[{"id": OIDC_PUBLIC_CLIENT_ID, "grant_types": ["refresh_token"]}],
            )
        ],
        url_signer=url_signer,
    )


def _path_template(app: flask.Flask, environ: dict) -> str:
    """``GET /openeo/1.2/jobs/j-1`` -> ``/jobs/{job_id}``: the request counter's key, per route not per id."""
    try:
        rule, _ = app.url_map.bind_to_environ(environ).match(return_rule=True)
    except HTTPException:
        return api_relative_path(environ.get("PATH_INFO", "/"))
    return _RULE_PARAM.sub(r"{\1}", _RULE_PREFIX.sub("", rule.rule)) or "/"


def build_app(state: BackendState, url: str, shutdown: Any) -> flask.Flask:
    settings = state.settings()
    issuer = f"{url}/oidc"
    oidc = LocalOidcProvider(
        TokenSigner(load_or_create_key(state.data_dir / "oidc-signing.key"), issuer), state.settings
    )
    signer = LocalUrlSigner(
        load_or_create_key(state.data_dir / "url-signing.key"), lambda: state.settings()["signed_url_lifetime"]
    )
    config = _backend_config(settings["name"], issuer, signer)
    # openeo-driver reads parts of its config through a process-wide getter (normally a Python file named
    # by OPENEO_BACKEND_CONFIG); this process serves exactly one backend, so hand it the config directly.
    openeo_driver.config.load._backend_config_getter._config = config
    openeo_driver.views.HttpAuthHandler = _local_auth_handler(oidc)

    batch_jobs = LifecycleBatchJobs(state.store, state.settings, state.data_dir, state.federation)
    app = openeo_driver.views.build_app(backend_implementation=LocalBackendImplementation(config, batch_jobs))
    app.register_blueprint(oidc.blueprint(), url_prefix="/oidc")
    app.register_blueprint(control_blueprint(state, oidc, shutdown))
    app.register_blueprint(static_blueprint(state))
    auth = app.extensions["auth_handler"]
    _add_missing_job_views(app, auth, batch_jobs, state.settings)
    install_log_pages(app, auth, batch_jobs, state.settings)
    add_checksums(app, state.data_dir / "results", state.settings)

    @app.before_request
    def _hide_jobs_of_missing_upstreams() -> None:
        """Aggregator outage: every route of a job whose upstream is out answers 404 JobNotFound
        (status, results, assets, logs, start, cancel, delete), as openEO Platform does."""
        job_id = (flask.request.view_args or {}).get("job_id")
        if job_id and state.federation.hides(job_id, state.settings()):
            raise JobNotFoundException(job_id)

    @app.before_request
    def _restart_finished_jobs() -> None:
        endpoint = flask.request.endpoint or ""
        if flask.request.method == "POST" and endpoint.endswith(".start_job"):
            try:
                user = auth.get_user_from_bearer_token(flask.request)
            except Exception:
                return
            batch_jobs.restart_if_done(flask.request.view_args["job_id"], user.user_id)

    middleware = FaultMiddleware(app.wsgi_app, stats=state.stats, template_of=lambda env: _path_template(app, env))
    app.wsgi_app = middleware
    state.attach(middleware)
    return app


def _add_missing_job_views(
    app: flask.Flask, auth: HttpAuthHandler, batch_jobs: LifecycleBatchJobs, settings: Any
) -> None:
    """openeo-driver routes PATCH /jobs/{id} and GET /jobs/{id}/estimate but answers 501; fill them in. The
    estimate is listed in the capabilities while the setting ``estimates`` serves it (openeo-driver hides it)."""

    @auth.requires_bearer_auth
    def modify_job(job_id: str, user: Any) -> flask.Response:
        body = flask.request.get_json(silent=True)
        if not isinstance(body, dict):
            raise OpenEOApiException(status_code=400, code="BadRequest", message="Expected a JSON object.")
        batch_jobs.update_job(job_id, user.user_id, body)
        return flask.Response(status=204)

    @auth.requires_bearer_auth
    def job_estimate(job_id: str, user: Any) -> flask.Response:
        if not settings()["estimates"]:
            raise FeatureUnsupportedException()
        return flask.jsonify(batch_jobs.estimate(job_id, user.user_id))

    openeo_driver.views._openeo_endpoint_metadata = [
        (path, methods, EndpointMetadata(hidden=False, for_version=lambda _version: settings()["estimates"]))
        if path.endswith("/jobs/<job_id>/estimate")
        else (path, methods, info)
        for path, methods, info in openeo_driver.views._openeo_endpoint_metadata
    ]

    for blueprint in ("openeo", "openeo_old"):
        app.view_functions[f"{blueprint}.modify_job"] = modify_job
        app.view_functions[f"{blueprint}.job_estimate"] = job_estimate
