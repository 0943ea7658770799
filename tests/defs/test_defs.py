import dagster as dg

from image_pipeline import definitions

defs = definitions.defs()  # what the code location loads: the defs folder, the dg way


def test_definitions_load() -> None:
    job = defs.resolve_job_def("process_request_job")
    assert job.partitions_def is not None
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert keys == {"validated_csv", "compressed_images", "output_csv", "request_notification"}
    assert defs.resolve_sensor_def("upload_sensor").default_status == dg.DefaultSensorStatus.RUNNING
    assert defs.resolve_sensor_def("request_failure_sensor")


def test_asset_chain_order() -> None:
    graph = defs.resolve_asset_graph()
    parents = {
        k.to_user_string(): {p.to_user_string() for p in graph.get(k).parent_keys} for k in graph.get_all_asset_keys()
    }
    assert parents == {
        "validated_csv": set(),
        "compressed_images": {"validated_csv"},
        "output_csv": {"compressed_images"},
        "request_notification": {"output_csv"},
    }
