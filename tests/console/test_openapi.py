"""The admin API against its own OpenAPI document (schemathesis, bounded):
no 5xx, every status and body as documented, malformed input refused."""

import os
import subprocess
import sys

from conftest import TOKEN

CHECKS = ",".join([
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
])


def test_admin_api_keeps_to_its_openapi_document(gateway, tmp_path):
    # The same Python that runs pytest, so no PATH lookup can pick another.
    out = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "run", f"http://{gateway.admin}/admin/v1/openapi.json",
         "--header", f"Authorization: Bearer {TOKEN}",
         "--checks", CHECKS,
         "--max-examples", os.environ.get("MODELGATE_ST_EXAMPLES", "25"),
         "--request-timeout", "10",
         "--seed", "6",
         "--generation-database", "none",
         "--max-failures", "5"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )
    sys.stdout.write(out.stdout[-4000:])
    assert out.returncode == 0, out.stdout[-20000:] + out.stderr[-4000:]
    assert "passed" in out.stdout
