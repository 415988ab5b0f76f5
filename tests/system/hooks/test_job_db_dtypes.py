"""Exact round trips of user columns of every supported dtype, and clear refusals of the rest."""

from __future__ import annotations

import datetime as dt
import decimal

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from airflow_provider_openeo.hooks.job_db import JobDbInputError, OpenEOJobDbHook, UnsupportedColumnError
from tests.fixtures.databases import same_table


def _all_dtypes() -> pd.DataFrame:
    n = 4
    return pd.DataFrame(
        {
            "i8": np.array([-128, 0, 1, 127], dtype="int8"),
            "i32": np.array([-(2**31), 0, 7, 2**31 - 1], dtype="int32"),
            "i64": np.array([-(2**63), 0, 7, 2**63 - 1], dtype="int64"),
            "u32": np.array([0, 1, 2, 2**32 - 1], dtype="uint32"),
            "u64": np.array([0, 1, 2**63, 2**64 - 1], dtype="uint64"),
            "f64": [0.1, np.nan, -1e308, 1 / 3],
            "f32": np.array([0.1, np.nan, 3.5, -0.25], dtype="float32"),
            "inf": [np.inf, -np.inf, 1.0, 2.0],
            "flag": [True, False, True, False],
            "s": ["a", "ü€ 😀", None, "'; DROP TABLE x; --"],
            "s_nan": ["a", np.nan, "c", "d"],
            "Int64": pd.array([1, None, -3, 2**62], dtype="Int64"),
            "UInt8": pd.array([1, None, 255, 0], dtype="UInt8"),
            "Float64": pd.array([0.5, None, 1e-300, 2.0], dtype="Float64"),
            "boolean": pd.array([True, None, False, True], dtype="boolean"),
            "string": pd.array(["x", None, "z", ""], dtype="string"),
            "string_pa": pd.array(["x", None, "z", ""], dtype="string[pyarrow]"),
            "dt_ns": pd.to_datetime(
                ["2024-01-01T00:00:00.000000001", None, "1970-01-01", "2262-04-11"], format="ISO8601"
            ),
            "dt_s": pd.array(np.array(["1000-01-01", "2024-05-05T12:00:01", "NaT", "9999-12-31"], dtype="M8[s]")),
            "dt_tz": pd.to_datetime(
                ["2024-03-31T01:59:59.999999", None, "2024-10-27T02:30", "2000-01-01"], format="ISO8601"
            )
            .tz_localize("UTC")
            .tz_convert("Europe/Brussels"),
            "dt_utc_ms": pd.to_datetime(["2024-01-01T00:00:00.123", None, "2024-01-02", "2024-01-03"], format="ISO8601")
            .as_unit("ms")
            .tz_localize("UTC"),
            "td": pd.to_timedelta([1, None, -3, 10**12], unit="ns"),
            "period": pd.period_range("2024-01-01", periods=n, freq="D"),
            "cat": pd.Categorical(["b", "a", None, "b"], categories=["c", "b", "a"]),
            "cat_ordered_int": pd.Categorical([3, 1, 2, None], categories=[1, 2, 3], ordered=True),
            "json": [
                [1, 2.5, "x", None],
                {"a": {"b": [True, None]}, "$t": "user key"},
                (1, "tuple"),
                None,
            ],
            "json_exotic": [
                np.array([1, 2, 3], dtype="int16"),
                np.float32(1.5),
                pd.Timestamp("2024-01-01T00:00:00.000000001", tz="UTC"),
                {"d": dt.date(2024, 1, 2), "dec": decimal.Decimal("1.10"), "b": b"\x00\xff"},
            ],
            "mixed": [1, "two", 3.0, True],
            "all_null": [None, None, None, None],
            "all_nan": [np.nan] * n,
        },
        index=pd.Index([10, 5, 7, 1], name="row"),
    )


def test_every_supported_dtype_round_trips_exactly(job_db: OpenEOJobDbHook) -> None:
    df = _all_dtypes()
    job_db.initialize_from_df(df)
    back = same_table(job_db).read()
    pd.testing.assert_frame_equal(back[df.columns], df, check_exact=True)
    for name in df.columns:  # assert_frame_equal treats None and NaN alike in object columns: check the objects
        for original, restored in zip(df[name].tolist(), back[name].tolist(), strict=True):
            assert type(original) is type(restored), (name, original, restored)
    assert back["json_exotic"].iloc[0].dtype == np.int16
    assert back["s_nan"].iloc[1] is not None and np.isnan(back["s_nan"].iloc[1])


def test_range_index_restored(job_db: OpenEOJobDbHook) -> None:
    df = pd.DataFrame({"a": [1, 2, 3]})
    job_db.initialize_from_df(df)
    assert isinstance(job_db.read().index, pd.RangeIndex)


def test_geodataframe_round_trip_exact_with_crs(job_db: OpenEOJobDbHook) -> None:
    rng = np.random.default_rng(42)
    geometries = [
        shapely.Point(*rng.random(2) * 1e6),
        shapely.Polygon(rng.random((5, 2)) * 100).convex_hull,
        shapely.LineString(rng.random((4, 3))),  # 3D
        shapely.MultiPoint(rng.random((3, 2))),
        None,
        shapely.Point(),
    ]
    gdf = gpd.GeoDataFrame(
        {"name": list("abcdef"), "other": gpd.GeoSeries([shapely.Point(1, 2)] * 6, crs="EPSG:4326")},
        geometry=geometries,
        crs="EPSG:32631",
    )
    job_db.initialize_from_df(gdf)
    back = same_table(job_db).read()
    assert isinstance(back, gpd.GeoDataFrame)
    assert back.geometry.name == "geometry" and back.crs == gdf.crs and back["other"].crs == gdf["other"].crs
    pd.testing.assert_frame_equal(back[gdf.columns], gdf, check_exact=True)
    for original, restored in zip(gdf.geometry, back.geometry, strict=True):
        assert (original is None and restored is None) or shapely.equals_exact(original, restored, tolerance=0)
    subset = job_db.get_by_status(["not_started"], max=2)
    assert isinstance(subset, gpd.GeoDataFrame) and subset.crs == gdf.crs


def test_persist_with_drifted_dtypes_keeps_column_dtypes(job_db: OpenEOJobDbHook) -> None:
    """MBJM's DataFrame.update/.loc turn columns into object/float; values that fit are still written."""
    df = pd.DataFrame(
        {"n": [1, 2, 3], "when": pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03"], format="ISO8601")}
    )
    job_db.initialize_from_df(df)
    drifted = job_db.get_by_indices([1]).astype(object)
    drifted.loc[1, "n"] = 20.0
    drifted.loc[1, "when"] = pd.Timestamp("2030-01-01")
    job_db.persist(drifted)
    back = job_db.read()
    assert back["n"].dtype == "int64" and back.loc[1, "n"] == 20
    assert back["when"].dtype == "datetime64[ns]" and back.loc[1, "when"] == pd.Timestamp("2030-01-01")
    bad = job_db.get_by_indices([2]).astype(object)
    bad.loc[2, "n"] = 2.5
    with pytest.raises(JobDbInputError, match=r"Row 2, column 'n'"):
        job_db.persist(bad)
    pd.testing.assert_frame_equal(job_db.read(), back)


@pytest.mark.parametrize(
    ("column", "message"),
    [
        (pd.Series([1 + 2j, 3j]), r"Column 'bad' has dtype complex128"),
        (pd.Series(pd.arrays.IntervalArray.from_breaks([0, 1, 2])), r"Column 'bad' has dtype interval"),
        (pd.Series(pd.arrays.SparseArray([0, 1])), r"Column 'bad' has dtype Sparse"),
        (pd.Series([1, 2], dtype="int64[pyarrow]"), r"Column 'bad' has dtype int64\[pyarrow\]"),
        (pd.Series([{1: "a"}, None]), r"Row 0, column 'bad': dict keys must be strings"),
        (pd.Series([object(), None]), r"Row 0, column 'bad': values of type object cannot be stored"),
        (pd.Series([{"a", "b"}, None]), r"Row 0, column 'bad': values of type set"),
        (pd.Series(["ok", "nul\x00"]), r"Row 1, column 'bad': strings must not contain NUL"),
    ],
)
def test_unsupported_columns_are_refused_naming_the_column(
    job_db: OpenEOJobDbHook, column: pd.Series, message: str
) -> None:
    df = pd.DataFrame({"good": [1, 2], "bad": column})
    with pytest.raises(UnsupportedColumnError if "dtype" in message else JobDbInputError, match=message):
        job_db.initialize_from_df(df)
    assert not job_db.exists()
