"""An sslyze scan of pylb's https listener: nothing below TLS 1.2, no weak cipher."""

import trio
import trustme
from sslyze import (
    ScanCommand,
    Scanner,
    ServerNetworkLocation,
    ServerScanRequest,
    ServerScanStatusEnum,
)

import pylb
from pylb.testing import open_hello

OLD = {
    ScanCommand.SSL_2_0_CIPHER_SUITES: "ssl_2_0_cipher_suites",
    ScanCommand.SSL_3_0_CIPHER_SUITES: "ssl_3_0_cipher_suites",
    ScanCommand.TLS_1_0_CIPHER_SUITES: "tls_1_0_cipher_suites",
    ScanCommand.TLS_1_1_CIPHER_SUITES: "tls_1_1_cipher_suites",
}
NEW = {
    ScanCommand.TLS_1_2_CIPHER_SUITES: "tls_1_2_cipher_suites",
    ScanCommand.TLS_1_3_CIPHER_SUITES: "tls_1_3_cipher_suites",
}


def scan(port: int) -> dict[str, list[str]]:
    location = ServerNetworkLocation("localhost", port, ip_address="127.0.0.1")
    scanner = Scanner()
    scanner.queue_scans([ServerScanRequest(server_location=location, scan_commands={*OLD, *NEW})])
    (result,) = list(scanner.get_results())
    assert result.scan_status == ServerScanStatusEnum.COMPLETED, result.connectivity_error_trace
    accepted = {}
    for attribute in (*OLD.values(), *NEW.values()):
        attempt = getattr(result.scan_result, attribute)
        assert attempt.result is not None, attempt.error_trace
        accepted[attribute] = [s.cipher_suite.name for s in attempt.result.accepted_cipher_suites]
    return accepted


async def test_sslyze_finds_only_tls12_and_13_with_aead_forward_secret_ciphers() -> None:
    async with open_hello() as hello, pylb.open_balancer([hello.backend], tls=trustme.CA()) as lb:
        accepted = await trio.to_thread.run_sync(scan, lb.addresses[1].port)
    for attribute in OLD.values():
        assert accepted[attribute] == [], f"{attribute} offered: {accepted[attribute]}"
    assert accepted["tls_1_3_cipher_suites"], "TLS 1.3 must be offered"
    assert accepted["tls_1_2_cipher_suites"], "TLS 1.2 must be offered"
    for name in accepted["tls_1_2_cipher_suites"]:
        assert name.startswith("TLS_ECDHE_"), f"not forward-secret: {name}"
        assert "GCM" in name or "CHACHA20" in name, f"not AEAD: {name}"
        assert "CBC" not in name and "RC4" not in name and "3DES" not in name
