"""graphql-core as a real client: `query` prints its introspection query; `build` reads our
response on stdin, builds a client schema with build_client_schema, and prints it as SDL."""
import json
import sys

from graphql import build_client_schema, get_introspection_query, print_schema

if sys.argv[1] == "query":
    print(get_introspection_query(descriptions=True, specified_by_url=True, directive_is_repeatable=True))
else:
    response = json.load(sys.stdin)
    if response.get("errors"):
        sys.exit(f"introspection errors: {response['errors']}")
    print(print_schema(build_client_schema(response["data"])))
