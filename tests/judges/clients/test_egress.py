"""The egress policy as an attacker meets it: every trick for reaching a host nobody allowed,
checked on the URL, on the addresses a name resolves to, and on a redirect — with the real
client against servers on 127.0.0.1."""

import asyncio
import contextlib
import ipaddress
import socket
import threading

import pytest
from aiohttp import web

from judges.clients import ClientSettings, JudgeConfigError, JudgeRequest, judge_many
from judges.clients.egress import EgressPolicy, EgressRefused, PolicyResolver
from judges.clients.fake_server import fake_server, free_port

PRODUCTION = EgressPolicy.from_settings(
    ["api.openai.com", "*.example-llm.org", "10.20.0.0/16"], key_envs=["OPENAI_API_KEY"]
)
DEVELOPMENT = EgressPolicy.from_settings(["localhost", "127.0.0.0/8", "::1"])

REFUSED_EVERYWHERE = [
    "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
    "http://169.254.170.2/v2/credentials",  # ECS task credentials
    "http://[fd00:ec2::254]/latest/meta-data/",
    "http://100.100.100.200/latest/meta-data/",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://metadata/computeMetadata/v1/",
    "http://[fe80::1]/v1",
    "http://[::ffff:169.254.169.254]/v1",  # IPv4-mapped IPv6
    "http://0.0.0.0:6379/",
    "http://[::]:5432/",
    "http://224.0.0.1/v1",
    "http://255.255.255.255/v1",
]


@pytest.mark.parametrize("policy", [PRODUCTION, DEVELOPMENT], ids=["production", "development"])
@pytest.mark.parametrize("url", REFUSED_EVERYWHERE)
def test_metadata_link_local_and_unspecified_addresses_are_refused_by_every_policy(policy, url):
    with pytest.raises(EgressRefused):
        policy.check_url(url)


def test_an_allow_list_naming_a_metadata_address_still_refuses_it():
    # given an admin who listed the link-local network by mistake
    policy = EgressPolicy.from_settings(["169.254.0.0/16", "0.0.0.0/0", "::/0"])
    # then the metadata services stay out of reach, other addresses are allowed
    with pytest.raises(EgressRefused):
        policy.check_url("http://169.254.169.254/")
    with pytest.raises(EgressRefused):
        policy.check_url("http://[fd00:ec2::254]/")
    assert policy.check_url("http://192.0.2.10/v1") == "192.0.2.10"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:6379/",  # Redis on the server itself
        "http://localhost:5432/",
        "http://[::1]:8000/",
        "http://2130706433/v1",  # 127.0.0.1 as one decimal number
        "http://0177.0.0.1/v1",  # octal
        "http://0x7f.0.0.1/v1",  # hex
        "http://127.1/v1",
        "http://10.0.0.5/v1",  # private, outside the listed 10.20.0.0/16
        "http://192.168.1.1/v1",
        "http://api.openai.com.evil.test/v1",
        "http://evil-api.openai.com/v1",
        "http://example-llm.org.evil.test/v1",
        "http://api.openai.com@127.0.0.1/v1",  # user info: the host is after the @
        "http://127.0.0.1#@api.openai.com/v1",
        "http://user:pass@api.openai.com/v1",
        "ftp://api.openai.com/v1",
        "file:///etc/passwd",
        "gopher://127.0.0.1:6379/_FLUSHALL",
        "http:///v1",
        "http://api.openai.com:99999/v1",
    ],
)
def test_the_production_policy_refuses_hosts_it_does_not_list(url):
    with pytest.raises(EgressRefused):
        PRODUCTION.check_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "https://api.openai.com/v1",
        "https://API.OpenAI.com./v1",
        "https://eu.example-llm.org/v1",
        "http://10.20.3.4:8000/v1",
    ],
)
def test_the_production_policy_allows_what_it_lists(url):
    PRODUCTION.check_url(url)


def test_an_allowed_name_must_resolve_to_a_public_address_unless_the_network_is_listed():
    # given a name on the list (as DNS answers it at connect time)
    # then a public address passes, loopback / private / metadata ones are refused
    PRODUCTION.check_address(ipaddress.ip_address("8.8.8.8"), host="api.openai.com")
    for address in ("127.0.0.1", "10.0.0.7", "169.254.169.254", "::1", "192.168.0.2"):
        with pytest.raises(EgressRefused):
            PRODUCTION.check_address(ipaddress.ip_address(address), host="api.openai.com")
    # a listed network makes its private addresses fine for a listed name
    PRODUCTION.check_address(ipaddress.ip_address("10.20.9.9"), host="api.openai.com")


def test_key_names_must_be_listed():
    PRODUCTION.check_key_env("OPENAI_API_KEY")
    PRODUCTION.check_key_env(None)
    for name in ("SECRET_KEY", "DATABASE_URL", "REDIS_URL", "openai_api_key", "PATH", "HOME"):
        with pytest.raises(EgressRefused):
            PRODUCTION.check_key_env(name)
    with pytest.raises(EgressRefused):
        DEVELOPMENT.check_key_env("OPENAI_API_KEY")  # nothing listed: no key may be sent


# --- the client ----------------------------------------------------------------------------


class _Rebinding:
    """A resolver whose answer for a name is chosen by the test (DNS rebinding)."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.asked: list[str] = []

    async def resolve(self, host, port=0, family=socket.AF_INET):
        self.asked.append(host)
        return [
            {
                "hostname": host,
                "host": self.address,
                "port": port,
                "family": socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
        ]

    async def close(self):
        pass


def _one_request() -> list[JudgeRequest]:
    return [JudgeRequest(key="k1", messages=[{"role": "user", "content": "step"}])]


def test_a_name_that_resolves_to_a_refused_address_at_connect_time_is_never_reached():
    # given an allowed name whose DNS answer now points at the metadata service
    policy = EgressPolicy.from_settings(["judge.example-llm.org"])
    resolver = PolicyResolver(policy, inner=_Rebinding("169.254.169.254"))

    async def go():
        with pytest.raises(EgressRefused):
            await resolver.resolve("judge.example-llm.org", 80)

    asyncio.run(go())
    # and when it resolves to the server itself
    resolver = PolicyResolver(policy, inner=_Rebinding("127.0.0.1"))
    with pytest.raises(EgressRefused):
        asyncio.run(resolver.resolve("judge.example-llm.org", 80))


def test_the_client_refuses_a_rebound_name_without_retrying(monkeypatch):
    # given a fake server on 127.0.0.1 reached through a name that "rebinds" to loopback,
    # and a policy that lists the name but not the loopback network
    with fake_server(latency_ms=0) as server:
        port = server.base_url.split(":")[2].split("/")[0]
        policy = EgressPolicy.from_settings(["judge.example-llm.org"])
        rebinding = _Rebinding("127.0.0.1")
        monkeypatch.setattr(
            "judges.clients.openai_compat.PolicyResolver",
            lambda p: PolicyResolver(p, inner=rebinding),
        )
        settings = ClientSettings(
            base_url=f"http://judge.example-llm.org:{port}/v1",
            model="m",
            egress=policy,
            max_retries=3,
        )
        # when
        [result] = asyncio.run(judge_many(_one_request(), settings=settings))
        # then no request reached the server and the failure is final, with the reason
        assert server.stats()["requests"] == 0
        assert rebinding.asked  # the name was resolved through the policy
        assert not result.ok and result.failure == "client_error" and not result.retryable
        assert "refused" in result.error and "127.0.0.1" in result.error


def test_the_client_checks_the_url_and_key_name_before_anything_is_sent(monkeypatch):
    monkeypatch.setenv("SECRET_KEY", "the-servers-own-secret")
    with fake_server(latency_ms=0) as server:
        # a key name the policy does not list
        bad_key = ClientSettings(
            base_url=server.base_url, model="m", api_key_env="SECRET_KEY", egress=DEVELOPMENT
        )
        with pytest.raises(JudgeConfigError, match="SECRET_KEY is not a judge key name"):
            asyncio.run(judge_many(_one_request(), settings=bad_key))
        # a host the policy does not list
        bad_host = ClientSettings(base_url=server.base_url, model="m", egress=PRODUCTION)
        with pytest.raises(JudgeConfigError, match="not an allowed judge host"):
            asyncio.run(judge_many(_one_request(), settings=bad_host))
        assert server.stats()["requests"] == 0


@contextlib.contextmanager
def _redirecting_server(target: str):
    """A 127.0.0.1 server that answers every POST with a 307 to ``target``."""

    async def redirect(request):
        raise web.HTTPTemporaryRedirect(target)

    port = free_port()
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder = {}

    async def main():
        app = web.Application()
        app.router.add_post("/{tail:.*}", redirect)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        holder["stop"] = loop.create_future()
        ready.set()
        await holder["stop"]
        await runner.cleanup()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    ready.wait(10)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        loop.call_soon_threadsafe(holder["stop"].set_result, None)
        thread.join(10)


def test_a_redirect_is_never_followed_and_the_key_never_reaches_its_target(monkeypatch):
    # given an allowed endpoint that redirects to another server (which records what it gets)
    monkeypatch.setenv("JUDGE_KEY", "judge-key-value")
    policy = EgressPolicy.from_settings(["127.0.0.0/8"], key_envs=["JUDGE_KEY"])
    with (
        fake_server(latency_ms=0) as target,
        _redirecting_server(target.base_url + "/chat/completions") as redirecting,
    ):
        settings = ClientSettings(
            base_url=redirecting, model="m", api_key_env="JUDGE_KEY", egress=policy
        )
        # when
        [result] = asyncio.run(judge_many(_one_request(), settings=settings))
        # then the redirect target saw nothing, and the step failed for good with the reason
        assert target.stats()["requests"] == 0
        assert not result.ok and result.failure == "client_error"
        assert "redirects are not followed" in result.error
