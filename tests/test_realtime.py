import gc

from rtstream.realtime import REALTIME_THRESHOLDS, quiet_gc


def test_quiet_gc_freezes_start_up_objects_and_restores_the_collector():
    before = gc.get_threshold()
    frozen_before = gc.get_freeze_count()
    with quiet_gc():
        assert gc.get_threshold() == REALTIME_THRESHOLDS
        assert gc.get_freeze_count() > frozen_before
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
