"""The compose file puts gunicorn behind the TLS proxy and nowhere else."""

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_gunicorn_is_reachable_only_through_the_proxy():
    # given the compose file
    services = _compose()["services"]
    networks = _compose()["networks"]
    # then web publishes no port, and shares with the outside only an internal network
    assert "ports" not in services["web"]
    shared = set(services["web"]["networks"]) & set(services["proxy"]["networks"])
    assert shared and all(networks[n].get("internal") for n in shared)
    # and the proxy is the one publishing 443, with the app told it is behind it
    assert "443:443" in services["proxy"]["ports"]
    assert services["web"]["environment"]["STEPAUDIT_BEHIND_PROXY"] == "1"
    assert "--forwarded-allow-ips" in services["web"]["command"]
    # and nothing else publishes a port
    assert [name for name, s in services.items() if s.get("ports")] == ["proxy"]


def test_the_caddyfile_forwards_to_web_and_trusts_no_client_forwarding():
    caddyfile = (ROOT / "deploy" / "Caddyfile").read_text()
    assert "reverse_proxy web:8000" in caddyfile
    # trusted_proxies would make Caddy keep a client's own X-Forwarded-For
    assert "trusted_proxies" not in caddyfile.replace("no trusted_proxies", "")
    volumes = _compose()["services"]["proxy"]["volumes"]
    assert "./deploy/Caddyfile:/etc/caddy/Caddyfile:ro" in volumes
