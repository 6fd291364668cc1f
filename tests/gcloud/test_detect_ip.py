"""Public-IP detection: injectable, loopback-only here, and a clear error when it fails."""

from __future__ import annotations

import http.server
import threading

import pytest
from specs import IMAGE

from daskbox.errors import LaunchSpecError
from daskbox.gcloud.launch import detect_public_ip, plan_launch
from daskbox.gcloud.settings import LaunchSettings
from daskbox.gcloud.tls import make_launch_tls
from daskbox_services import free_port


def _serve(answer: bytes):
    class Echo(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def echo_server():
    server = _serve(b"198.51.100.23\n")
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (b"2001:db8::7\n", "2001:db8::7/128"),
        (b"1.2.3\n", None),
        (b"999.1.1.1\n", None),
        (b"<html>captive portal</html>", None),
    ],
)
def test_only_a_real_address_is_accepted(answer, expected):
    server = _serve(answer)
    try:
        assert detect_public_ip(f"http://127.0.0.1:{server.server_address[1]}/") == expected
    finally:
        server.shutdown()
        server.server_close()


def test_detects_the_address_an_echo_service_reports(echo_server):
    assert detect_public_ip(echo_server) == "198.51.100.23/32"


def test_environment_variable_overrides_the_service(echo_server, monkeypatch):
    monkeypatch.setenv("DASKBOX_IP_ECHO_URL", echo_server)
    assert detect_public_ip() == "198.51.100.23/32"


def test_unreachable_service_gives_none():
    assert detect_public_ip(f"http://127.0.0.1:{free_port()}/", timeout=2) is None


def test_given_range_skips_detection():
    def never() -> str | None:
        raise AssertionError("detection must not run when --source-range is given")

    settings = LaunchSettings(instance="daskbox-demo", source_range="192.0.2.4/32")
    spec = plan_launch(
        settings,
        project="p",
        project_name="demo",
        image=IMAGE,
        tls=make_launch_tls("x"),
        tls_days=1,
        detect_ip=never,
    )
    assert [rule.source_ranges for rule in spec.firewall_rules] == [("192.0.2.4/32",)]


def test_failed_detection_says_to_pass_source_range():
    with pytest.raises(LaunchSpecError, match="pass --source-range"):
        plan_launch(
            LaunchSettings(instance="daskbox-demo"),
            project="p",
            project_name="demo",
            image=IMAGE,
            tls=make_launch_tls("x"),
            tls_days=1,
            detect_ip=lambda: None,
        )
