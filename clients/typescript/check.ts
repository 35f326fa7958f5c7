// Checks every response against the OpenAPI document the client was
// generated from: the status is listed for the operation, a JSON body
// matches the documented schema (JSON Schema 2020-12, as OpenAPI 3.1 says),
// the content type is documented, every documented header is sent, and no
// object in the body has a field its schema does not list (JSON Schema
// allows unlisted fields unless told otherwise; a generated client would
// drop them without a word).

import { readFileSync } from "node:fs";
import { Ajv2020 } from "ajv/dist/2020.js";

const DOC_ID = "https://tokengate.invalid/openapi.json";

type JsonObject = { [key: string]: unknown };

function isObject(value: unknown): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function escapePointer(segment: string): string {
  return segment.replace(/~/g, "~0").replace(/\//g, "~1");
}

export class Checker {
  private readonly doc: JsonObject;
  private readonly ajv: Ajv2020;
  checked = 0;

  constructor(path: string) {
    const doc: unknown = JSON.parse(readFileSync(path, "utf8"));
    if (!isObject(doc)) throw new Error(`${path}: not a JSON object`);
    this.doc = doc;
    this.ajv = new Ajv2020({ strict: false, validateFormats: false, validateSchema: false, allErrors: true });
    this.ajv.addSchema(doc, DOC_ID);
  }

  private at(pointer: string): unknown {
    let value: unknown = this.doc;
    for (const raw of pointer.split("/").slice(1)) {
      const segment = raw.replace(/~1/g, "/").replace(/~0/g, "~");
      if (Array.isArray(value)) value = value[Number(segment)];
      else value = isObject(value) ? value[segment] : undefined;
    }
    return value;
  }

  /** The object at `pointer`, following `$ref`s; with the pointer it was found at. */
  private resolve(pointer: string): [JsonObject, string] {
    for (let hops = 0; hops < 10; hops++) {
      const value = this.at(pointer);
      if (!isObject(value)) throw new Error(`nothing at #${pointer}`);
      const ref = value["$ref"];
      if (typeof ref !== "string") return [value, pointer];
      pointer = ref.replace(/^#/, "");
    }
    throw new Error(`$ref loop at #${pointer}`);
  }

  async check(method: string, schemaPath: string, response: Response): Promise<void> {
    const status = String(response.status);
    const what = `${method.toUpperCase()} ${schemaPath} -> ${status}`;
    const operationPointer = `/paths/${escapePointer(schemaPath)}/${method.toLowerCase()}`;
    if (!isObject(this.at(operationPointer))) throw new Error(`${what}: the document has no such operation`);
    const responses = this.at(`${operationPointer}/responses`);
    if (!isObject(responses) || !(status in responses)) {
      throw new Error(`${what}: status not listed (${isObject(responses) ? Object.keys(responses).join(", ") : "none"})`);
    }
    const [documented, pointer] = this.resolve(`${operationPointer}/responses/${status}`);

    const headers = isObject(documented["headers"]) ? documented["headers"] : {};
    for (const [name, header] of Object.entries(headers)) {
      const value = response.headers.get(name);
      if (value === null) throw new Error(`${what}: documented header ${name} not sent`);
      const schema = isObject(header) && isObject(header["schema"]) ? header["schema"] : {};
      if (schema["type"] === "integer" && !/^[0-9]+$/.test(value)) {
        throw new Error(`${what}: header ${name} is not an integer: ${value}`);
      }
    }

    const body = await response.clone().text();
    const contentType = (response.headers.get("content-type") ?? "").split(";")[0]!.trim();
    const content = isObject(documented["content"]) ? documented["content"] : {};
    if (body.length > 0 || Object.keys(content).length > 0) {
      const key = Object.keys(content).find((k) => k.split(";")[0]!.trim() === contentType);
      if (key === undefined) throw new Error(`${what}: content type ${contentType} is not documented`);
      if (contentType === "application/json") {
        const validate = this.ajv.compile({ $ref: `${DOC_ID}#${pointer}/content/${escapePointer(key)}/schema` });
        const parsed: unknown = JSON.parse(body);
        if (!validate(parsed)) {
          throw new Error(`${what}: body does not match the schema: ${this.ajv.errorsText(validate.errors)}\n${body}`);
        }
        const extra = this.undocumented(parsed, `${pointer}/content/${escapePointer(key)}/schema`, "body");
        if (extra !== undefined) throw new Error(`${what}: undocumented field ${extra}\n${body}`);
      }
    }
    this.checked += 1;
  }

  /** The first field of `value` (a body that matched its schema) that the schema does not list. */
  private undocumented(value: unknown, schemaPointer: string, where: string): string | undefined {
    const [schema, at] = this.resolve(schemaPointer);
    for (const keyword of ["oneOf", "anyOf"]) {
      const branches = schema[keyword];
      if (Array.isArray(branches) && value !== null) {
        // The branch that is not `{"type": "null"}` (how a nullable object is written).
        const index = branches.findIndex((b) => !(isObject(b) && b["type"] === "null"));
        if (index >= 0) return this.undocumented(value, `${at}/${keyword}/${index}`, where);
      }
    }
    if (Array.isArray(value)) {
      if (!isObject(schema["items"])) return undefined;
      for (const [i, item] of value.entries()) {
        const found = this.undocumented(item, `${at}/items`, `${where}[${i}]`);
        if (found !== undefined) return found;
      }
      return undefined;
    }
    if (!isObject(value)) return undefined;
    const parts: string[] = Array.isArray(schema["allOf"])
      ? schema["allOf"].map((_, i) => `${at}/allOf/${i}`)
      : [at];
    const properties = new Map<string, string>();
    let open = false;
    for (const part of parts) {
      const [resolved, partAt] = this.resolve(part);
      const listed = isObject(resolved["properties"]) ? resolved["properties"] : undefined;
      if (listed === undefined || (resolved["additionalProperties"] !== undefined && resolved["additionalProperties"] !== false)) {
        open = true;
      }
      for (const name of Object.keys(listed ?? {})) properties.set(name, `${partAt}/properties/${escapePointer(name)}`);
    }
    for (const [name, field] of Object.entries(value)) {
      const fieldAt = properties.get(name);
      if (fieldAt === undefined) {
        if (open) continue;
        return `${where}.${name}`;
      }
      const found = this.undocumented(field, fieldAt, `${where}.${name}`);
      if (found !== undefined) return found;
    }
    return undefined;
  }
}
