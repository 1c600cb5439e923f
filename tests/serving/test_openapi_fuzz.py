"""Every route, fuzzed from the service's own OpenAPI document (schemathesis): never a 5xx."""

import schemathesis
from hypothesis import HealthCheck, settings

from serving.schemas import openapi_document

schema = schemathesis.openapi.from_dict(openapi_document())


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_route_answers_a_generated_request_with_a_5xx(case, http):
    response = case.call(base_url=http.base)
    assert response.status_code < 500, (case.method, case.path, case.body, response.text[-1800:])
    assert "x-request-id" in {name.lower() for name in response.headers}
