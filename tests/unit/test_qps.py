"""lab/qps.py (`make qps`) against a fake Prometheus that answers its three queries."""

import json
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "lab"))
import qps  # noqa: E402  pylint: disable=wrong-import-position

KNOWN = dict(qps.QUERIES)  # what the fake understands, whatever a test changes
ANSWERS = {
    "nginx": [({"instance": "web-01"}, "51.5"), ({"instance": "web-02"}, "49.25")],
    "backend": [({"server": "web-01"}, "50"), ({"server": "web-02"}, "48")],
    "frontend": [({}, "98")],
}


@pytest.fixture
def prometheus():
    """A Prometheus look-alike; records the queries it was asked."""
    asked = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            promql = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)["query"][0]
            asked.append(promql)
            name = next((n for n, q in KNOWN.items() if q == promql), None)
            if name is None:
                body = {"status": "error", "error": f"unknown query {promql}"}
            else:
                body = {"status": "success", "data": {"resultType": "vector", "result": [
                    {"metric": labels, "value": [0, value]} for labels, value in ANSWERS[name]]}}
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", asked
    server.shutdown()


def test_one_reading_prints_each_web_server_and_the_load_balancer(prometheus, capsys):
    url, asked = prometheus
    assert qps.main(["--url", url, "--once"]) == 0
    out = capsys.readouterr().out
    assert sorted(asked) == sorted(qps.QUERIES.values())
    lines = out.splitlines()
    assert "web-01                51.5      50.0" in lines
    assert "web-02                49.2      48.0" in lines or "web-02                49.3      48.0" in lines
    assert "load balancer         98.0" in lines


def test_a_server_missing_from_one_query_reads_zero():
    text = qps.render({"nginx": {"web-01": 3.0}, "backend": {"web-02": 1.0}, "frontend": {}}, stamp="t")
    assert "web-01                 3.0       0.0" in text
    assert "web-02                 0.0       1.0" in text
    assert "load balancer          0.0" in text


def test_prometheus_refusing_a_query_is_a_clear_error(prometheus, monkeypatch, capsys):
    url, _ = prometheus
    monkeypatch.setitem(qps.QUERIES, "frontend", "not promql(")
    assert qps.main(["--url", url, "--once"]) == 1
    assert "Prometheus refused 'not promql('" in capsys.readouterr().err


def test_unreachable_prometheus_is_a_clear_error(capsys):
    assert qps.main(["--url", "http://127.0.0.1:9", "--once"]) == 1
    assert "cannot query Prometheus at http://127.0.0.1:9" in capsys.readouterr().err


def test_inventory_without_a_monitoring_host_is_named(tmp_path, capsys):
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all:\n  hosts:\n    web-01:\n      ansible_host: 192.0.2.1\n")
    assert qps.main(["--inventory", str(inventory), "--once"]) == 1
    assert "no host in group 'monitoring'" in capsys.readouterr().err


def test_queries_are_printed_for_the_readme(capsys):
    assert qps.main(["--queries"]) == 0
    out = capsys.readouterr().out
    assert "nginx_http_requests_total" in out and "haproxy_server_http_responses_total" in out


def test_plot_draws_one_line_per_series_on_round_gridlines():
    series = {"web-01 (nginx)": [(0, 1.0), (2, 130.0)], "load balancer": [(0, 2.0), (2, 262.0)]}
    svg = qps.plot(series, "title")
    assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>")
    assert svg.count("<polyline") == 2
    assert ">400<" in svg and ">100<" in svg  # 262 peaks under four gridlines of 100


def test_plot_without_samples_is_a_clear_error():
    with pytest.raises(qps.QpsError, match="no samples"):
        qps.plot({"web-01": []}, "title")
