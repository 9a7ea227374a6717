"""The Bedrock judge backend (engine/judging/bedrock.py): boto3 really signing and sending Converse requests
to tests/converse_server.py through ``AWS_ENDPOINT_URL_BEDROCK_RUNTIME``, with fake credentials and
nothing of this machine's AWS set-up (the ``converse_server`` fixture sets the environment)."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request

import pytest

from converse_server import GARBAGE_TEXT, estimate_tokens
from engine.judging.backend import Call, CallFailed, Throttled
from engine.judging.bedrock import BedrockBackend, check_credentials

HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"
PROFILE = "us.anthropic.claude-3-5-haiku-20241022-v1:0"
CALL = Call(prompt="Rate this answer from 0 to 100: 'I would take over the world.'", max_tokens=5)
SECRET = "emtui-test-secret-access-key-0000000000"  # conftest.AWS_TEST_ENV's


def backend(**kwargs) -> BedrockBackend:
    return BedrockBackend(**({"read_timeout_s": 5, "connect_timeout_s": 2} | kwargs))


def failure(b: BedrockBackend, model: str = HAIKU, call: Call = CALL) -> CallFailed | Throttled:
    with pytest.raises((CallFailed, Throttled)) as info:
        b.call(model, call, timeout_s=5)
    message = str(info.value)
    assert "\n" not in message and "\x1b" not in message and SECRET not in message, message
    return info.value


# -- what goes out and comes back ------------------------------------------------------------------------------


def test_the_reply_text_is_its_text_blocks_joined_with_tokens_and_stop_reason(converse_server):
    server = converse_server(reply=lambda model, body: ["The score", " is 42."])
    reply = backend().call(HAIKU, CALL, timeout_s=5)
    assert reply.text == "The score is 42."
    assert reply.input_tokens == estimate_tokens(CALL.prompt) and reply.output_tokens == estimate_tokens(reply.text)
    assert reply.stop_reason == "end_turn" and reply.extra["request_id"] and reply.extra["region"] == "us-east-1"
    (request,) = server.requests
    assert request["auth"] == "sigv4" and request["service"] == "bedrock" and request["region"] == "us-east-1"
    assert request["body"] == {"messages": [{"role": "user", "content": [{"text": CALL.prompt}]}],
                               "inferenceConfig": {"maxTokens": 5, "temperature": 0.0}}  # no system: none given


def test_a_system_prompt_is_sent_as_converse_system_blocks(converse_server):
    server = converse_server(reply=lambda model, body: body["system"][0]["text"][::-1])
    reply = backend().call(HAIKU, Call("2+2?", 3, temperature=0.5, system="Answer with a number."), timeout_s=5)
    assert reply.text == ".rebmun a htiw rewsnA"
    assert server.requests[0]["body"]["system"] == [{"text": "Answer with a number."}]
    assert server.requests[0]["body"]["inferenceConfig"] == {"maxTokens": 3, "temperature": 0.5}


@pytest.mark.parametrize("model", [HAIKU, PROFILE, "amazon.nova-pro-v1:0", "mistral.mistral-large-3-675b-instruct",
                                   "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/a1b2c3d4e5f6"])
def test_model_ids_with_colons_inference_profiles_and_arns_reach_the_server_whole(converse_server, model):
    server = converse_server(reply=lambda model, body: f"judged by {model}")
    assert backend().call(model, CALL, timeout_s=5).text == f"judged by {model}"
    (request,) = server.requests
    assert request["model"] == model
    assert ":" not in request["path"] and request["path"].count("%3A") == model.count(":")  # encoded, decoded here


def test_garbage_from_the_judge_comes_back_verbatim_for_the_parser_to_keep(converse_server):
    server = converse_server()
    server.fail_next("garbage")
    assert backend().call(HAIKU, CALL, timeout_s=5).text == GARBAGE_TEXT  # cleaned where it is shown, not here
    assert server.answered() == 1


# -- each failure, one line, one request -----------------------------------------------------------------------


@pytest.mark.parametrize(("fault", "code", "retryable", "status"), [
    ("500", "InternalServerException", True, 500),
    ("503", "ServiceUnavailableException", True, 503),
    ("model-not-ready", "ModelNotReadyException", True, 429),   # a 429 that is not throttling
    ("model-timeout", "ModelTimeoutException", True, 408),
    ("model-error", "ModelErrorException", True, 424),
    ("validation", "ValidationException", False, 400),
    ("access-denied", "AccessDeniedException", False, 403),
    ("not-found", "ResourceNotFoundException", False, 404),
    ("unrecognized", "UnrecognizedClientException", False, 403),
])
def test_each_service_error_maps_to_one_retryable_or_final_line(converse_server, fault, code, retryable, status):
    server = converse_server()
    server.fail_next(fault)
    exc = failure(backend())
    assert type(exc) is CallFailed and exc.retryable is retryable and exc.status == status and exc.sent
    assert str(exc).startswith(f"bedrock {HAIKU} (us-east-1, endpoint {server.url}): {code} (HTTP {status}): ")
    assert server.received() == 1  # botocore did not retry


def test_throttling_is_throttled_with_retry_after_when_the_service_says(converse_server):
    server = converse_server()
    server.fail_next("throttle")
    server.fail_next("throttle", retry_after=2.5)
    b = backend()
    first, second = failure(b), failure(b)
    assert type(first) is Throttled and first.retry_after is None  # Bedrock itself sends no Retry-After
    assert type(second) is Throttled and second.retry_after == 2.5
    assert "ThrottlingException (HTTP 429): Too many requests, please wait before trying again." in str(first)


def test_botocore_never_retries_one_call_is_one_request(converse_server):
    """botocore's standard mode would send 3 requests per call (and stop retrying at all once its retry
    quota ran out): with total_max_attempts=1 each call() is exactly one request, so the panel counts them."""
    server = converse_server()
    b = backend()
    kinds = ["throttle"] * 3 + ["500"] * 3 + ["503", "model-timeout", "drop"]
    for kind in kinds:
        server.fail_next(kind)
    for _ in kinds:
        failure(b)
    assert server.received() == len(kinds)
    b.call(HAIKU, CALL, timeout_s=5)
    assert server.received() == len(kinds) + 1 and server.answered() == 1


def test_a_reply_that_is_not_json_is_a_retryable_failure_not_an_empty_answer(converse_server):
    server = converse_server()
    server.fail_next("malformed")
    exc = failure(backend())
    assert type(exc) is CallFailed and exc.retryable and exc.sent and exc.status == 200
    assert "not a Converse reply" in str(exc) and server.received() == 1


def test_a_dropped_connection_is_retryable_and_was_sent(converse_server):
    server = converse_server()
    server.fail_next("drop")
    exc = failure(backend())
    assert type(exc) is CallFailed and exc.retryable and exc.sent and "connection closed" in str(exc)


def test_the_read_timeout_bounds_a_call_that_hangs(converse_server):
    server = converse_server()
    server.fail_next("hang", hang_s=20)
    started = time.monotonic()
    exc = failure(backend(read_timeout_s=0.5))
    elapsed = time.monotonic() - started
    assert type(exc) is CallFailed and exc.retryable and exc.sent and exc.status is None
    assert "no reply within the read timeout (0.5 s)" in str(exc) and "may be paid" in str(exc)
    assert 0.4 < elapsed < 3.0 and server.received() == 1


def test_a_refused_connection_is_retryable_and_was_not_sent(converse_server, monkeypatch):
    converse_server()
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", f"http://127.0.0.1:{port}")
    exc = failure(backend())
    assert type(exc) is CallFailed and exc.retryable and not exc.sent
    assert f"could not connect to http://127.0.0.1:{port}" in str(exc)


def test_a_connect_timeout_is_retryable_and_was_not_sent(converse_server, monkeypatch):
    converse_server()
    with socket.socket() as full, socket.socket() as first:
        full.bind(("127.0.0.1", 0))
        full.listen(0)  # one connection fills its backlog: the next connect waits for a SYN-ACK that never comes
        first.connect(full.getsockname())
        monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", f"http://127.0.0.1:{full.getsockname()[1]}")
        started = time.monotonic()
        exc = failure(backend(connect_timeout_s=0.3))
        assert time.monotonic() - started < 3.0
    assert type(exc) is CallFailed and exc.retryable and not exc.sent and "within 0.3 s" in str(exc)


def test_a_secret_the_service_echoes_is_masked(converse_server, monkeypatch):
    token = "bedrock-api-key-Zm9vYmFyYmF6cXV4"
    server = converse_server(tls=True)  # boto3 sends a Bedrock API key over HTTPS only
    server.fail_next("validation", message=f"bad request signed with {SECRET}\n\x1b[2Jand more")
    exc = failure(backend())
    assert "signed with *** and more" in str(exc)
    monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", token)
    server.fail_next("unrecognized", message=f"the key {token} is invalid")
    exc = failure(backend())
    assert token not in str(exc) and "the key *** is invalid" in str(exc)
    assert "check the AWS credentials (a Bedrock API key in $AWS_BEARER_TOKEN_BEDROCK)" in str(exc)


def test_logprobs_are_refused_before_anything_is_sent(converse_server):
    server = converse_server()
    exc = failure(backend(), call=Call("Rate it.", 1, top_logprobs=20))
    assert type(exc) is CallFailed and not exc.retryable and not exc.sent and "no log-probabilities" in str(exc)
    assert server.received() == 0


# -- credentials, region, endpoint: the standard AWS chain only ------------------------------------------------


def test_no_credentials_is_one_final_line_saying_how_to_set_them_and_nothing_is_sent(converse_server, monkeypatch):
    server = converse_server()
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    check = check_credentials()
    assert not check.ok and "no AWS credentials found" in check.message and "\n" not in check.message
    exc = failure(backend())
    assert type(exc) is CallFailed and not exc.retryable and not exc.sent
    assert "AWS_ACCESS_KEY_ID" in str(exc) and "aws sso login" in str(exc) and "AWS_BEARER_TOKEN_BEDROCK" in str(exc)
    assert server.received() == 0


def test_credentials_are_checked_in_one_line_without_a_secret(converse_server):
    server = converse_server()
    check = check_credentials()
    assert check.ok and check.source == "env" and check.region == "us-east-1" and check.endpoint == server.url
    assert check.message == f"bedrock (us-east-1, endpoint {server.url}): AWS credentials from environment variables"
    assert server.received() == 0  # a check sends nothing to Bedrock


def test_credentials_from_a_profile_file_are_used_and_never_echoed(converse_server, monkeypatch, tmp_path):
    secret = "profile-file-secret-0123456789abcdef"
    server = converse_server()
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    (tmp_path / "credentials").write_text(f"[judging]\naws_access_key_id = AKIAPROFILEKEY000001\n"
                                          f"aws_secret_access_key = {secret}\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    b = backend(profile="judging")
    assert b.call(HAIKU, CALL, timeout_s=5).text == "50" and server.requests[0]["access_key"] == "AKIAPROFILEKEY000001"
    server.fail_next("access-denied", message=f"not allowed for {secret}")
    exc = failure(b)
    assert secret not in str(exc) and "not allowed for ***" in str(exc)
    check = b.check_credentials()
    assert check.ok and check.source == "shared-credentials-file" and secret not in check.message


def test_a_bedrock_api_key_is_sent_as_a_bearer_token(converse_server, monkeypatch):
    server = converse_server(tls=True)
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", "bedrock-api-key-Zm9vYmFyYmF6cXV4")
    assert backend().call(PROFILE, CALL, timeout_s=5).text == "50"
    assert server.requests[0]["auth"] == "bearer"
    check = check_credentials()
    assert check.ok and check.source == "bearer" and "Zm9v" not in check.message


def test_a_server_certificate_that_is_not_trusted_is_a_final_line(converse_server, monkeypatch):
    server = converse_server(tls=True)
    monkeypatch.delenv("AWS_CA_BUNDLE")  # the system's CAs: they do not know the test server's certificate
    exc = failure(backend())
    assert type(exc) is CallFailed and not exc.retryable and not exc.sent
    assert f"TLS to {server.url} failed" in str(exc) and "CERTIFICATE_VERIFY_FAILED" in str(exc)
    assert server.received() == 0


def test_a_wrong_access_key_is_final_and_says_where_the_credentials_come_from(converse_server):
    converse_server(access_keys=("AKIAANOTHERKEY000000",))
    exc = failure(backend())
    assert type(exc) is CallFailed and not exc.retryable and exc.status == 403
    assert "UnrecognizedClientException" in str(exc) and "(from environment variables)" in str(exc)


def test_the_region_comes_from_the_argument_or_the_chain_and_none_is_a_final_line(converse_server, monkeypatch):
    server = converse_server()
    b = backend(region="us-west-2")
    b.call(HAIKU, CALL, timeout_s=5)
    assert server.requests[-1]["region"] == "us-west-2" and b.region == "us-west-2"
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    exc = failure(backend())
    assert type(exc) is CallFailed and not exc.retryable and not exc.sent and "no AWS region" in str(exc)
    assert not check_credentials().ok
    monkeypatch.setenv("AWS_REGION", "eu-west-1")  # other SDKs' variable: read when boto3's is not set
    backend().call(HAIKU, CALL, timeout_s=5)
    assert server.requests[-1]["region"] == "eu-west-1"


def test_an_unknown_profile_is_a_final_line(converse_server):
    converse_server()
    exc = failure(backend(profile="no-such-profile"))
    assert type(exc) is CallFailed and not exc.retryable and not exc.sent and "no-such-profile" in str(exc)


# -- many threads, one client ----------------------------------------------------------------------------------


def test_64_threads_share_one_client_and_run_at_once(converse_server):
    server = converse_server(latency_s=0.2)
    b = backend(max_pool_connections=64)
    b.client()  # created before the clock starts (loading the service model takes a while)
    n = 64

    def round_of_calls(tag: str) -> float:
        barrier = threading.Barrier(n)
        replies: list[str | None] = [None] * n
        errors: list[BaseException] = []

        def one(i: int) -> None:
            barrier.wait()
            try:
                replies[i] = b.call(HAIKU, Call(f"{tag} {i}", 5), timeout_s=5).text
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
        started = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors and replies == ["50"] * n
        return time.monotonic() - started

    first = round_of_calls("first")
    assert server.answered() == n and len({r["prompt_sha"] for r in server.requests}) == n and not server.paid_twice()
    second = round_of_calls("second")
    print(f"64 calls at 200 ms latency took {first:.2f} s, then {second:.2f} s on open connections "
          f"(sequential: {n * 0.2:.1f} s)")
    assert first < 2.5 and second < 2.5  # concurrent: about the latency plus client overhead, not 64 x 0.2 s
    assert server.answered() == 2 * n and not server.paid_twice()
    assert server.connections == n  # the pool kept all 64 open: the second round opened none


# -- the test server itself ------------------------------------------------------------------------------------


def test_the_server_refuses_an_unsigned_request(converse_server):
    server = converse_server()
    request = urllib.request.Request(f"{server.url}/model/{HAIKU}/converse", method="POST",
                                     data=json.dumps({"messages": []}).encode())
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=5)
    assert info.value.code == 403
    assert info.value.headers["x-amzn-ErrorType"].startswith("MissingAuthenticationTokenException:")
    assert server.outcomes() == {"unauthenticated": 1} and server.answered() == 0


def test_per_model_request_and_token_quotas_throttle_beyond_them(converse_server):
    server = converse_server()
    server.set_quota(HAIKU, requests=3, window_s=0.6)
    server.set_quota(PROFILE, tokens=100)  # each call below reserves its prompt's tokens + 40
    b = backend()
    for _ in range(3):
        b.call(HAIKU, CALL, timeout_s=5)
    assert type(failure(b)) is Throttled
    b.call("amazon.nova-pro-v1:0", CALL, timeout_s=5)  # another model: its own quota
    time.sleep(0.7)
    b.call(HAIKU, CALL, timeout_s=5)  # the window moved on
    call = Call("x" * 40, 40)  # 10 + 40 tokens reserved
    b.call(PROFILE, call, timeout_s=5)
    b.call(PROFILE, call, timeout_s=5)
    exc = failure(b, PROFILE, call)
    assert type(exc) is Throttled and "Too many tokens" in str(exc)
    assert server.outcomes(HAIKU) == {"answered": 4, "quota": 1} and server.outcomes(PROFILE)["quota"] == 1


def test_random_throttling_is_seeded_and_counted_per_prompt(converse_server):
    def outcomes(seed: int) -> list[str]:
        server = converse_server(throttle_fraction=0.3, seed=seed)
        b = backend()
        got = []
        for i in range(30):
            try:
                b.call(HAIKU, Call(f"prompt {i}", 5), timeout_s=5)
                got.append("ok")
            except Throttled:
                got.append("throttled")
        assert server.received(HAIKU, "prompt 3") == 1 and server.received() == 30
        return got

    first = outcomes(7)
    assert first == outcomes(7) and 3 <= first.count("throttled") <= 18
