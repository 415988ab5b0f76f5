"""row_keys: the same job-defining values give the same key whatever pandas made of them; other values, or
another row id a source gives its rows, give another key."""

from __future__ import annotations

import datetime as dt

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from shapely.geometry import Point, box

from airflow_provider_openeo.batch.row_keys import KEY_LENGTH, RowKeyError, key_rule, row_keys


def one_key(frame: pd.DataFrame, **kwargs) -> str:
    (key,) = row_keys(frame, **kwargs)
    return key


def test_keys_are_stable_across_dtypes():
    """2020 is 2020 in any integer or float column, a list is a list whether Parquet gave back a numpy array or
    a tuple, a timestamp is the same in any unit, a string in any string dtype."""
    base = one_key(
        pd.DataFrame(
            {
                "year": [2020],
                "extent": [["2024-01-01", "2024-02-01"]],
                "name": ["a"],
                "when": [pd.Timestamp("2024-01-01")],
            }
        )
    )
    variants = [
        pd.DataFrame({"year": pd.array([2020], dtype="Int64"), "extent": [("2024-01-01", "2024-02-01")]}),
        pd.DataFrame({"year": np.array([2020.0]), "extent": [np.array(["2024-01-01", "2024-02-01"])]}),
        pd.DataFrame({"year": pd.Series([2020], dtype=object), "extent": [["2024-01-01", "2024-02-01"]]}),
        pd.DataFrame({"year": np.array([2020], dtype="int16"), "extent": [["2024-01-01", "2024-02-01"]]}),
    ]
    for frame in variants:
        frame["name"] = pd.Series(["a"], dtype="string")
        frame["when"] = pd.Series([pd.Timestamp("2024-01-01")]).astype("datetime64[s]")
        assert one_key(frame) == base, frame.dtypes.to_dict()
    category = pd.DataFrame(
        {
            "year": [2020],
            "extent": [["2024-01-01", "2024-02-01"]],
            "name": pd.Categorical(["a"]),
            "when": [dt.datetime(2024, 1, 1)],
        }
    )
    assert one_key(category) == base


def test_column_order_and_empty_columns_do_not_count_but_every_value_does():
    frame = pd.DataFrame({"a": [1], "b": ["x"]})
    assert one_key(frame[["b", "a"]]) == one_key(frame)
    assert one_key(frame.assign(note=[None])) == one_key(frame), "an empty column added later keeps the keys"
    assert one_key(frame.assign(note=[np.nan])) == one_key(frame)
    assert one_key(frame.assign(b=["y"])) != one_key(frame)
    assert one_key(frame.assign(a=[1.5])) != one_key(frame)
    assert one_key(frame.assign(c=[1])) != one_key(frame)
    assert one_key(frame.assign(b=["1"])) != one_key(frame.assign(b=[1])), "a string is not a number"


def test_bookkeeping_columns_do_not_count():
    """An MBJM job file's row keeps its key as it runs: status, job id, backend, usage are the table's own."""
    frame = pd.DataFrame({"year": [2020]})
    ran = frame.assign(status=["finished"], id=["j-1"], backend_name=["foo"], costs=[1.5], row_key=["old"])
    assert one_key(ran) == one_key(frame)


def test_timezones_count_as_the_same_instant():
    utc = pd.DataFrame({"t": [pd.Timestamp("2024-01-01T12:00", tz="UTC")]})
    paris = pd.DataFrame({"t": [pd.Timestamp("2024-01-01T13:00", tz="Europe/Paris")]})
    naive = pd.DataFrame({"t": [pd.Timestamp("2024-01-01T12:00")]})
    assert one_key(utc) == one_key(paris)
    assert one_key(utc) != one_key(naive)


def test_geometries_count_by_their_shape():
    fields = gpd.GeoDataFrame({"title": ["a"]}, geometry=[box(0, 0, 1, 1)], crs="EPSG:4326")
    same = gpd.GeoDataFrame({"title": ["a"]}, geometry=[box(0, 0, 1, 1)], crs="EPSG:4326")
    moved = gpd.GeoDataFrame({"title": ["a"]}, geometry=[box(0, 0, 1, 2)], crs="EPSG:4326")
    assert one_key(fields) == one_key(same)
    assert one_key(fields) != one_key(moved)
    assert one_key(pd.DataFrame({"where": [Point(1, 2)]})) != one_key(pd.DataFrame({"where": [Point(2, 1)]}))


def test_positions_are_no_identity_but_a_source_s_own_row_ids_are():
    frame = pd.DataFrame({"title": ["a", "b"]})
    assert row_keys(frame.set_axis([5, 9])) == row_keys(frame), "positions (an unnamed int index) do not count"
    named = frame.set_axis(pd.Index(["north", "south"]))
    assert row_keys(named) != row_keys(frame)
    assert row_keys(named)[0] != row_keys(named.set_axis(["east", "south"]))[0]
    tiles = frame.set_axis(pd.Index([31, 32], name="tile"))
    assert row_keys(tiles) != row_keys(frame)


def test_the_same_values_twice_are_two_jobs_with_keys_of_their_own():
    twice = pd.DataFrame({"year": [2020, 2020, 2021]})
    keys = row_keys(twice)
    assert len(set(keys)) == 3
    assert keys[0] == one_key(pd.DataFrame({"year": [2020]})), "the first occurrence keeps the single row's key"
    assert row_keys(pd.DataFrame({"year": [2020, 2020, 2020]}))[:2] == keys[:2]


def test_key_columns_key_by_those_columns_alone():
    frame = pd.DataFrame({"tile": ["31UFS", "31UGS"], "title": ["x", "y"]})
    renamed = frame.assign(title=["other", "names"])
    assert row_keys(frame, key_columns=["tile"]) == row_keys(renamed, key_columns=["tile"])
    assert row_keys(frame, key_columns=["tile"]) != row_keys(frame)
    assert key_rule(["tile"]) == {"version": 1, "columns": ["tile"]} and key_rule(None)["columns"] is None
    with pytest.raises(RowKeyError, match=r"Rows 0 and 1 have the same values in key_columns \['tile'\]"):
        row_keys(frame.assign(tile=["a", "a"]), key_columns=["tile"])


def test_keys_are_hex_digests_and_unsupported_values_name_row_and_field():
    (key,) = row_keys(pd.DataFrame({"a": [1]}))
    assert len(key) == KEY_LENGTH and int(key, 16) >= 0
    with pytest.raises(RowKeyError, match=r"Row 'r1', field 'extent': cannot be part of the row's key: .*set"):
        row_keys(pd.DataFrame({"extent": [{1, 2}]}, index=["r1"]))
    with pytest.raises(RowKeyError, match=r"Row 0, field 'options': .*dict's keys must be strings"):
        row_keys(pd.DataFrame({"options": [{1: "a"}]}))
