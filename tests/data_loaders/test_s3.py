"""Import and read back through s3:// against a local moto server."""

from __future__ import annotations

import json
import uuid

import numpy as np
import pytest
import s3fs

from data_loaders.format import DatasetError
from data_loaders.importers.mmrec import import_mmrec
from data_loaders.prepare import main as prepare_main
from data_loaders.stream import open_dataset


def test_s3_round_trip(s3_server, mmrec_tiny: dict, capsys) -> None:
    _, options = s3_server
    bucket = f"cimrec-{uuid.uuid4().hex[:8]}"
    s3fs.S3FileSystem(**options).mkdir(bucket)
    url = f"s3://{bucket}/ds"

    import_mmrec(str(mmrec_tiny["src"]), url, storage_options=options)
    ds = open_dataset(url, storage_options=options)
    got = ds.load_interactions()
    np.testing.assert_array_equal(got["user_id"], mmrec_tiny["users"])
    np.testing.assert_array_equal(got["split"], mmrec_tiny["labels"])
    np.testing.assert_array_equal(ds.load_item_features("text"), mmrec_tiny["features"]["text"])
    assert ds.verify() == 3  # interactions + two modalities

    with pytest.raises(DatasetError, match="already exists"):
        import_mmrec(str(mmrec_tiny["src"]), url, storage_options=options)
    import_mmrec(str(mmrec_tiny["src"]), url, name="tiny", overwrite=True, storage_options=options)
    fs = s3fs.S3FileSystem(**options)
    fs.invalidate_cache()
    assert [p for p in fs.ls(bucket) if "partial" in p] == []

    fs.rm(f"{bucket}/ds/manifest.json")
    with pytest.raises(DatasetError, match="not a complete dataset"):
        open_dataset(url, storage_options=options)

    assert prepare_main(["info", url, "--storage-options", json.dumps(options)]) == 2
    assert "not a complete dataset" in capsys.readouterr().err
