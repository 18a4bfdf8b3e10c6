"""URL ingest with SSRF protection.

Per hop: only http(s), no credentials in the URL; the host is resolved ONCE and every resolved address must
be public (or allow-listed) - private, loopback, link-local (incl. 169.254.169.254 metadata), shared, multicast,
reserved, unspecified, and IPv4 embedded in IPv6 (mapped, 6to4, Teredo, NAT64) are refused. We then connect
to that pinned IP ourselves (original Host header; SNI + certificate check against the original name for
https), so a DNS answer cannot change between check and connect (rebinding). Redirects are followed by hand
and every hop is re-checked. The body is streamed raw (no decompression bombs) and aborted past
max_video_bytes; the whole fetch, redirects included, has one deadline (url_timeout_s). Proxies from the
environment are ignored: they would bypass the pinning.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

from service import errors
from service.config import Settings

log = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_REDIRECTS = {301, 302, 303, 307, 308}
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# Special-purpose ranges Python's ipaddress still calls global (IANA special-purpose registries): the whole
# IETF protocol-assignments block (only parts of 192.0.0.0/24 are marked non-global), the deprecated 6to4
# relay anycast, AMT, AS112 and the local-use NAT64 prefix.
_EXTRA_FORBIDDEN = tuple(ipaddress.ip_network(n) for n in (
    "192.0.0.0/24", "192.88.99.0/24", "192.31.196.0/24", "192.52.193.0/24", "192.175.48.0/24",
    "64:ff9b:1::/48", "2001::/23", "2001:4:112::/48", "2620:4f:8000::/48"))
_DEFAULT_PORT = {"http": 80, "https": 443}


@dataclass(frozen=True)
class Target:
    url: str  # what the caller asked for (used to resolve relative redirects)
    pinned_url: str  # same URL with the checked IP as host
    host_header: str
    sni: str | None
    ip: IPAddress


def _embedded_v4(ip: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 address smuggles, if any (mapped, 6to4, Teredo, NAT64)."""
    if ip.version == 6:
        if ip.ipv4_mapped:
            return ip.ipv4_mapped
        if ip.sixtofour:
            return ip.sixtofour
        if ip.teredo:
            return ip.teredo[1]
        if ip in _NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


def is_forbidden(ip: IPAddress) -> bool:
    for addr in {ip, _embedded_v4(ip)}:
        if (not addr.is_global or addr.is_private or addr.is_loopback or addr.is_link_local
                or addr.is_multicast or addr.is_reserved or addr.is_unspecified
                or any(addr in net for net in _EXTRA_FORBIDDEN if net.version == addr.version)):
            return True
    return False


def parse_allowlist(entries: list[str]) -> tuple[list, set[str]]:
    """CIDRs/IPs -> networks; anything else is a host name (leading '.' = that domain and subdomains)."""
    nets, hosts = [], set()
    for entry in entries:
        entry = entry.strip().lower()
        if not entry:
            continue
        try:
            nets.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            hosts.add(entry)
    return nets, hosts


def _host_allowed(host: str, hosts: set[str]) -> bool:
    return host in hosts or any(h.startswith(".") and (host.endswith(h) or host == h[1:]) for h in hosts)


async def resolve(host: str, port: int) -> list[IPAddress]:
    """All addresses of `host` (one DNS resolution; tests replace this to simulate DNS)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos))


async def check_url(url: str, settings: Settings, item=None) -> Target:
    """Validate one hop and pin its address; raises UrlNotAllowed / UrlFetchFailed."""
    refuse = lambda why: errors.UrlNotAllowed(f"url refused: {why}", item=item)  # noqa: E731
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise refuse("malformed url") from exc
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORT:
        raise refuse(f"scheme '{scheme}' (only http, https)")
    if parts.username is not None or parts.password is not None:
        raise refuse("credentials in url")
    if not parts.hostname:
        raise refuse("no host")
    try:
        host = parts.hostname.encode("idna").decode("ascii").lower()
    except UnicodeError as exc:
        raise refuse("invalid host name") from exc
    port = port or _DEFAULT_PORT[scheme]
    nets, hosts = parse_allowlist(settings.url_allowlist)
    try:
        addrs = await resolve(host, port)
    except (OSError, UnicodeError, ValueError) as exc:
        raise errors.UrlFetchFailed(f"cannot resolve host '{host}'", item=item) from exc
    if not addrs:
        raise errors.UrlFetchFailed(f"host '{host}' has no address", item=item)
    if not _host_allowed(host, hosts):
        for ip in addrs:  # every answer must pass, so a mixed public/private answer is refused
            if is_forbidden(ip) and not any(a in net for net in nets for a in {ip, _embedded_v4(ip)}
                                            if a.version == net.version):
                raise refuse(f"'{host}' resolves to a non-public address ({ip})")
    ip = addrs[0]
    ip_host = f"[{ip}]" if ip.version == 6 else str(ip)
    pinned = urlunsplit((scheme, f"{ip_host}:{port}", parts.path or "/", parts.query, ""))
    name = f"[{host}]" if ":" in host else host
    header = name if port == _DEFAULT_PORT[scheme] else f"{name}:{port}"
    return Target(url=url, pinned_url=pinned, host_header=header, sni=host if scheme == "https" else None, ip=ip)


async def fetch_url(url: str, settings: Settings, item=None) -> bytes:
    """The body at `url` (after at most url_max_redirects checked redirects), or a typed 4xx error."""
    try:
        async with asyncio.timeout(settings.url_timeout_s):
            return await _fetch(url, settings, item)
    except TimeoutError:
        raise errors.UrlFetchFailed(f"url fetch took longer than {settings.url_timeout_s}s", item=item) from None
    except httpx.HTTPError as exc:
        raise errors.UrlFetchFailed(f"url fetch failed: {type(exc).__name__}", item=item) from exc


async def _fetch(url: str, settings: Settings, item) -> bytes:
    limit = settings.max_video_bytes
    timeout = httpx.Timeout(settings.url_timeout_s)
    async with httpx.AsyncClient(trust_env=False, follow_redirects=False, timeout=timeout) as client:
        current = url
        for _ in range(settings.url_max_redirects + 1):
            target = await check_url(current, settings, item)
            request = client.build_request(
                "GET", target.pinned_url,
                headers={"Host": target.host_header, "Accept-Encoding": "identity", "User-Agent": "aesrm-fetch/1"},
                extensions={"sni_hostname": target.sni} if target.sni else {})
            response = await client.send(request, stream=True)
            try:
                if response.status_code in _REDIRECTS:
                    location = response.headers.get("location")
                    if not location:
                        raise errors.UrlFetchFailed("redirect without Location", item=item)
                    current = urljoin(current, location)
                    continue
                if response.status_code != 200:
                    raise errors.UrlFetchFailed(f"upstream answered HTTP {response.status_code}", item=item)
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > limit:
                    raise errors.VideoTooLarge(f"url declares {declared} bytes > max_video_bytes={limit}", item=item)
                body = bytearray()
                async for chunk in response.aiter_raw():
                    body += chunk
                    if len(body) > limit:
                        raise errors.VideoTooLarge(f"url body exceeds max_video_bytes={limit}", item=item)
                return bytes(body)
            finally:
                await response.aclose()
        raise errors.UrlFetchFailed(f"more than url_max_redirects={settings.url_max_redirects} redirects", item=item)
