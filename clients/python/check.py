"""Checks every response against the OpenAPI document the client was
generated from: the status is listed for the operation, a JSON body matches
the documented schema (JSON Schema 2020-12, as OpenAPI 3.1 says), the
content type is documented, every documented header is sent, and no object
in the body has a field its schema does not list (JSON Schema allows
unlisted fields unless told otherwise; a generated client would drop them
without a word).

`Checker.hook` is an httpx response event hook, so no response reaches the
flow unchecked.
"""

import json
import re

import httpx
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

DOC_ID = "https://tokengate.invalid/openapi.json"


def _escape(segment: str) -> str:
    return segment.replace("~", "~0").replace("/", "~1")


class Checker:
    def __init__(self, path: str) -> None:
        with open(path, encoding="utf-8") as file:
            self.doc = json.load(file)
        resource = Resource.from_contents(self.doc, default_specification=DRAFT202012)
        self.registry = Registry().with_resource(DOC_ID, resource)
        # Each documented path as a pattern; a concrete path matches the
        # template with the fewest parameters.
        self.templates = sorted(
            (
                (template.count("{"), re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$"), template)
                for template in self.doc["paths"]
            ),
            key=lambda entry: entry[0],
        )
        self.checked = 0

    def _at(self, pointer: str):
        value = self.doc
        for raw in pointer.split("/")[1:]:
            segment = raw.replace("~1", "/").replace("~0", "~")
            value = value[int(segment)] if isinstance(value, list) else value[segment]
        return value

    def _resolve(self, pointer: str):
        for _ in range(10):
            value = self._at(pointer)
            ref = value.get("$ref") if isinstance(value, dict) else None
            if not isinstance(ref, str):
                return value, pointer
            pointer = ref.removeprefix("#")
        raise AssertionError(f"$ref loop at #{pointer}")

    def template_of(self, path: str) -> str:
        for _, pattern, template in self.templates:
            if pattern.match(path):
                return template
        raise AssertionError(f"{path}: no documented path matches")

    def hook(self, response: httpx.Response) -> None:
        response.read()
        method = response.request.method.lower()
        template = self.template_of(response.request.url.path)
        status = str(response.status_code)
        what = f"{method.upper()} {template} -> {status}"
        operation = f"/paths/{_escape(template)}/{method}"
        try:
            responses = self._at(f"{operation}/responses")
        except KeyError:
            raise AssertionError(f"{what}: the document has no such operation") from None
        if status not in responses:
            raise AssertionError(f"{what}: status not listed ({', '.join(responses)})")
        documented, pointer = self._resolve(f"{operation}/responses/{status}")

        for name, header in documented.get("headers", {}).items():
            value = response.headers.get(name)
            if value is None:
                raise AssertionError(f"{what}: documented header {name} not sent")
            if header.get("schema", {}).get("type") == "integer" and not value.isdigit():
                raise AssertionError(f"{what}: header {name} is not an integer: {value}")

        content_type = response.headers.get("content-type", "").split(";")[0].strip()
        content = documented.get("content", {})
        if response.content or content:
            keys = [key for key in content if key.split(";")[0].strip() == content_type]
            if not keys:
                raise AssertionError(f"{what}: content type {content_type!r} is not documented")
            if content_type == "application/json":
                schema = {"$ref": f"{DOC_ID}#{pointer}/content/{_escape(keys[0])}/schema"}
                validator = Draft202012Validator(schema, registry=self.registry)
                errors = sorted(validator.iter_errors(response.json()), key=str)
                if errors:
                    raise AssertionError(f"{what}: body does not match the schema: {errors[0].message}\n{response.text}")
                extra = self.undocumented(response.json(), f"{pointer}/content/{_escape(keys[0])}/schema", "body")
                if extra is not None:
                    raise AssertionError(f"{what}: undocumented field {extra}\n{response.text}")
        self.checked += 1

    def undocumented(self, value, schema_pointer: str, where: str):
        """The first field of `value` (a body that matched its schema) that the schema does not list."""
        schema, at = self._resolve(schema_pointer)
        for keyword in ("oneOf", "anyOf"):
            branches = schema.get(keyword)
            if isinstance(branches, list) and value is not None:
                # The branch that is not `{"type": "null"}` (how a nullable object is written).
                for index, branch in enumerate(branches):
                    if not (isinstance(branch, dict) and branch.get("type") == "null"):
                        return self.undocumented(value, f"{at}/{keyword}/{index}", where)
        if isinstance(value, list):
            if not isinstance(schema.get("items"), dict):
                return None
            for i, item in enumerate(value):
                found = self.undocumented(item, f"{at}/items", f"{where}[{i}]")
                if found is not None:
                    return found
            return None
        if not isinstance(value, dict):
            return None
        parts = [f"{at}/allOf/{i}" for i in range(len(schema["allOf"]))] if isinstance(schema.get("allOf"), list) else [at]
        properties = {}
        open_ = False
        for part in parts:
            resolved, part_at = self._resolve(part)
            listed = resolved.get("properties")
            if not isinstance(listed, dict) or resolved.get("additionalProperties", False) is not False:
                open_ = True
            for name in listed or {}:
                properties[name] = f"{part_at}/properties/{_escape(name)}"
        for name, field in value.items():
            if name not in properties:
                if open_:
                    continue
                return f"{where}.{name}"
            found = self.undocumented(field, properties[name], f"{where}.{name}")
            if found is not None:
                return found
        return None
