"""Issue detection: each rule on statistics records, with its severity, message and recommendation."""

from __future__ import annotations

from rtstream.issues import Issue, pipeline_issues, process_issues, receiver_issues
from rtstream.report import plain
from rtstream.stages.pacer import PacerStatistics
from rtstream.stats import DropCount, Summary

PACER = "stage 6 (pacer)"


def summary(p99: float | None, p50: float | None = None, count: int = 10) -> Summary:
    return Summary(count, p50 if p50 is not None else p99, p99, p99, p99)


def pacer(**changes) -> dict:
    stats = PacerStatistics(
        frames_in=1000,
        frames_sent=1000,
        fill_frames=0,
        underruns=0,
        starting_underruns=0,
        in_utterance_underruns=0,
        in_utterance_underrun_ms=0.0,
        idle_slots=0,
        late_frames=0,
        stalls=0,
        spurts=1,
        events=2,
        clears=0,
        drops={},
        lateness_ms=summary(0.8),
    )
    return {**plain(stats), **{k: plain(v) for k, v in changes.items()}}


def jitter_buffer(**changes) -> dict:
    stats = {
        "direction": "outbound",
        "target_delay_ms": 120.0,
        "max_delay_ms": 500.0,
        "delay_ms": plain(summary(300.0)),
        "concealment_rate": 0.0,
        "jitterBufferTargetDelay": 1.0,
        "drops": {},
        "chunks_in": 100,
    }
    return {**stats, **changes}


def only(stats: dict, where: str = PACER, others: tuple = ()) -> list[Issue]:
    return pipeline_issues([*others, (where, stats)])


def test_a_healthy_pacer_has_no_issue():
    assert only(pacer()) == []


def test_underruns_inside_replies_are_a_warning_and_above_five_percent_critical():
    assert only(pacer(underruns=20, in_utterance_underruns=20, in_utterance_underrun_ms=1200.0)) == [
        Issue(
            "warning",
            "underruns",
            PACER,
            "20 slots inside replies had no audio, 1200 ms (2.0%)",
            "audio came late inside replies: put a jitter_buffer before the pacer, or check the source's speed",
        )
    ]
    (issue,) = only(
        pacer(underruns=60, in_utterance_underruns=60), others=(("stage 3 (jitter_buffer)", jitter_buffer()),)
    )
    assert (issue.severity, issue.recommendation) == (
        "critical",
        "the jitter buffer ran dry inside replies: raise jitter_buffer start_delay_ms or min_delay_ms",
    )


def test_underruns_waiting_for_a_replys_first_audio_are_its_latency_not_a_gap():
    # the 2 others came after the replies' last audio, before their ends: no speech was split
    assert only(pacer(underruns=12, starting_underruns=10)) == [
        Issue(
            "info",
            "reply_start",
            PACER,
            "10 slots at the start of replies waited for their first audio",
            "that wait is the reply's latency: see the TTS's first chunk and the first audio",
        ),
    ]


def test_a_pacer_that_does_not_tell_in_utterance_underruns_is_judged_by_those_after_a_replys_start():
    stats = {k: v for k, v in pacer(underruns=12, starting_underruns=10).items() if not k.startswith("in_utterance")}
    assert next(i.message for i in only(stats)) == "2 slots inside replies had no audio (0.2%)"


def test_late_frames_point_at_the_cpu():
    assert only(pacer(late_frames=2)) == [
        Issue(
            "info",
            "late_frames",
            PACER,
            "2 frames sent late (0.2%)",
            "the process is CPU-bound: lower max_calls or add workers",
        )
    ]
    (issue,) = only(pacer(late_frames=30, stalls=2))
    assert (issue.severity, issue.message) == ("warning", "30 frames sent late (3.0%), 2 stalls")


def test_jitter_above_30_ms_is_a_warning_and_above_100_ms_critical():
    assert [(i.severity, i.code, i.message) for i in only(pacer(lateness_ms=summary(45.0)))] == [
        ("warning", "jitter", "frames leave 45 ms off their slots (p99)")
    ]
    assert only(pacer(lateness_ms=summary(150.0)))[0].severity == "critical"


def test_loss_above_five_percent():
    stats = {"receiver": {"lost": 8, "released": 92, "received": 92}, "drops": {}}
    assert only(stats, "stage 2 (sequencer)") == [
        Issue(
            "warning",
            "loss",
            "stage 2 (sequencer)",
            "8.0% of the packets lost (8 of 100)",
            "the network path loses packets: check it; a jitter_buffer after the sequencer conceals what is lost",
        )
    ]
    stats["receiver"] = {"lost": 20, "released": 80, "received": 80}
    assert only(stats, "stage 2 (sequencer)")[0].severity == "critical"
    stats["receiver"] = {"lost": 4, "released": 96, "received": 96}
    assert only(stats, "stage 2 (sequencer)") == []


def test_packets_reported_missing_that_came_later_are_not_lost():
    # a pass-through receiver reported 20 missing, then passed 18 of them on when they came late
    stats = {"receiver": {"lost": 20, "late": 18, "released": 98, "received": 98}, "drops": {}}
    assert only(stats, "stage 2 (sequencer)") == []
    # a reordering receiver drops what comes after its gap: those stay lost
    stats["drops"] = {"late": {"frames": 18, "samples": 18 * 160}}
    stats["receiver"] = {"lost": 20, "late": 18, "released": 80, "received": 98}
    assert only(stats, "stage 2 (sequencer)")[0].message == "20.0% of the packets lost (20 of 100)"


def test_drops_count_as_loss_but_duplicates_and_barge_ins_do_not():
    stats = {"frames_in": 100, "drops": {"duplicate": plain(DropCount(30, 3000)), "clear": {"frames": 9, "samples": 1}}}
    assert only(stats, "stage 5 (x)") == []
    stats["drops"]["outage"] = {"frames": 6, "samples": 960}
    (issue,) = only(stats, "stage 5 (x)")
    assert (issue.severity, issue.code, issue.message) == (
        "warning",
        "drops",
        "6.0% of the frames dropped (6 of 100: outage)",
    )


def test_concealment_above_five_percent_recommends_a_deeper_buffer():
    (issue,) = only(jitter_buffer(concealment_rate=0.07), "stage 3 (jitter_buffer)")
    assert (issue.code, issue.message, issue.recommendation) == (
        "loss",
        "7.0% of the audio played was concealment",
        "audio came too late or not at all: raise jitter_buffer max_delay_ms, or fix the loss upstream",
    )


def test_a_jitter_buffer_at_its_maximum():
    assert only(jitter_buffer(target_delay_ms=500.0), "stage 3 (jitter_buffer)") == [
        Issue(
            "warning",
            "jitter_buffer_max",
            "stage 3 (jitter_buffer)",
            "the target is at the maximum (500 ms)",
            "raise jitter_buffer max_delay_ms",
        )
    ]
    overflow = jitter_buffer(drops={"overflow": {"frames": 1, "samples": 160}}, chunks_in=1000)
    assert only(overflow, "stage 3 (jitter_buffer)")[0].message == "audio dropped on overflow"


def test_latency_of_an_inbound_buffer_and_of_first_audio():
    inbound = jitter_buffer(direction="inbound", delay_ms=plain(summary(250.0)))
    assert [(i.severity, i.message) for i in only(inbound, "stage 3 (jitter_buffer)")] == [
        ("warning", "audio waits 250 ms in the jitter buffer (median)")
    ]
    assert only(jitter_buffer(), "stage 3 (jitter_buffer)") == []  # outbound: the TTS running ahead
    sink = {"first_audio_ms": plain(summary(620.0)), "connects": 1, "drops": {}}
    (issue,) = only(sink, "stage 7 (telephony_ws)", others=(("stage 3 (jitter_buffer)", jitter_buffer()),))
    assert issue == Issue(
        "critical",
        "latency",
        "stage 7 (telephony_ws)",
        "620 ms from its arrival to the first frame sent (p99 over the replies)",
        "the jitter buffer plays once its target (120 ms) is buffered: "
        "lower jitter_buffer start_delay_ms and max_delay_ms if the network allows",
    )
    tts = {"first_chunk_ms": plain(summary(300.0)), "connects": 1}
    assert only(tts, "stage 1 (cartesia_tts)")[0].recommendation == "the voice service is slow to answer"


def test_reconnect_storms():
    assert only({"connects": 3}, "stage 7 (telephony_ws)") == []
    assert only({"connects": 4}, "stage 7 (telephony_ws)") == [
        Issue(
            "warning",
            "reconnects",
            "stage 7 (telephony_ws)",
            "3 reconnects",
            "the far end keeps dropping the connection: check its logs and the network in between",
        )
    ]
    assert only({"connects": 11}, "stage 7 (telephony_ws)")[0].severity == "critical"


def test_malformed_message_floods():
    assert only({"malformed": {"bad_json": 9}}, "stage 1 (cartesia_tts)") == []
    (issue,) = only({"malformed": {"bad_json": 9, "bad_base64": 1}}, "stage 1 (cartesia_tts)")
    assert (issue.severity, issue.message) == ("warning", "10 malformed messages (bad_base64, bad_json)")
    assert only({"malformed": {"bad_json": 100}}, "stage 1 (cartesia_tts)")[0].severity == "critical"


def test_a_receivers_jitter_gaps_and_bad_frames():
    report = {
        "deviation_ms": plain(summary(40.0)),
        "gaps": {"count": 2, "total_ms": 130.0},
        "wrong_size": 3,
        "errors": {},
    }
    assert [i.line() for i in receiver_issues("service 'twilio'", report)] == [
        "warning jitter at service 'twilio': frames arrive 40 ms off their cadence (p99); "
        "pace the stream: a pacer just before the telephony stage",
        "warning gaps at service 'twilio': the receiver's playout ran dry 2 times (130 ms); "
        "frames came later than their audio lasted: check the pacer's underruns and the network",
        "warning frame_size at service 'twilio': 3 frames of the wrong size; "
        "put a chunker with the protocol's frame_ms before the pacer",
    ]


def test_a_receiver_that_heard_fill_inside_replies():
    heard = {"frames": 30, "ms": 700.0, "fill_frames": 30, "speech_ms": 9300.0}
    assert [i.line() for i in receiver_issues("service 'phone'", {"in_utterance_underruns": heard})] == [
        "critical underruns at service 'phone': 700 ms inside replies was fill or dry playout (7.0%; 30 fill frames); "
        "the bridge's pacer ran short inside replies: check its in-utterance underruns and the process's CPU"
    ]
    quiet = {"frames": 0, "ms": 0.0, "fill_frames": 0, "speech_ms": 9300.0}
    assert receiver_issues("service 'phone'", {"in_utterance_underruns": quiet}) == []
    assert (
        receiver_issues("service 'phone'", {"in_utterance_underruns": {**heard, "ms": 90.0}})[0].severity == "warning"
    )


def test_a_late_loop_means_a_cpu_bound_process():
    assert process_issues(5.0) == []
    assert process_issues(25.0) == [
        Issue(
            "warning",
            "loop_lag",
            "the process",
            "the event loop runs 25 ms late",
            "the process is CPU-bound: lower max_calls or add workers",
        )
    ]
    assert process_issues(60.0)[0].severity == "critical"


def test_a_callers_failed_calls_are_critical_and_fail_the_run():
    from rtstream.issues import receiver_issues
    from rtstream.report import RunReport

    (issue,) = receiver_issues("service 'caller'", {"completed": 1, "failed": {"http_503": 2, "server_closed": 1}})
    assert (issue.severity, issue.code) == ("critical", "calls_failed")
    assert issue.message == "2 of the calls it placed never began (http_503 2)"
    assert receiver_issues("service 'caller'", {"completed": 3, "failed": {}}) == []
    # a call the server ended (a stop, a drain) is the server's to report, in its outcomes
    assert receiver_issues("service 'caller'", {"completed": 0, "failed": {"server_closed": 2}}) == []
    assert RunReport((), issues={"caller": (issue,)}).failed
    assert not RunReport(()).failed
