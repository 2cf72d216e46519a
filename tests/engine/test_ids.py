from geoetl.engine import ids


def test_job_id_ignores_key_order_and_depends_on_every_input() -> None:
    a = ids.job_id("wf", 1, {"a": 1, "b": [1, 2]})
    assert a == ids.job_id("wf", 1, {"b": [1, 2], "a": 1})
    assert len(a) == 64
    others = {
        ids.job_id("wf2", 1, {"a": 1, "b": [1, 2]}),
        ids.job_id("wf", 2, {"a": 1, "b": [1, 2]}),
        ids.job_id("wf", 1, {"a": 2, "b": [1, 2]}),
        ids.job_id("wf", 1, {"a": 1, "b": [1, 2]}, run=2),
    }
    assert a not in others
    assert len(others) == 4


def test_runs_are_deterministic_and_distinct() -> None:
    runs = [ids.job_id("wf", 1, {"x": 1}, run=r) for r in (1, 2, 3)]
    assert runs == [ids.job_id("wf", 1, {"x": 1}, run=r) for r in (1, 2, 3)]
    assert len(set(runs)) == 3


def test_task_id_format() -> None:
    job = "ab" * 32
    assert ids.task_id(job, "work", 7) == f"{job[:16]}-work-00007"
