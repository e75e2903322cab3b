// JSON Schema (2020-12 subset, as OpenAPI 3.1 uses it): the type and the small builders both OpenAPI documents are
// written with (the household page's API, web-ui/server/openapi.ts; the operator API, agent/src/operator/openapi.ts).
// The validator that enforces them is web-ui/server/schema.ts. No dependencies.

export interface Schema {
  readonly $ref?: string;
  readonly type?: JsonType | readonly JsonType[];
  readonly description?: string;
  readonly properties?: Readonly<Record<string, Schema>>;
  readonly required?: readonly string[];
  readonly additionalProperties?: boolean | Schema;
  readonly items?: Schema;
  readonly minItems?: number;
  readonly maxItems?: number;
  readonly minLength?: number;
  readonly maxLength?: number;
  readonly pattern?: string;
  readonly minimum?: number;
  readonly maximum?: number;
  readonly enum?: readonly unknown[];
  readonly format?: string;
  readonly examples?: readonly unknown[];
}

export type JsonType = 'object' | 'array' | 'string' | 'integer' | 'number' | 'boolean' | 'null';

export const str = (extra: Partial<Schema> = {}): Schema => ({ type: 'string', ...extra });
export const nstr = (extra: Partial<Schema> = {}): Schema => ({ type: ['string', 'null'], ...extra });
export const int = (extra: Partial<Schema> = {}): Schema => ({ type: 'integer', ...extra });
export const nint = (extra: Partial<Schema> = {}): Schema => ({ type: ['integer', 'null'], ...extra });
export const bool: Schema = { type: 'boolean' };
/** An object with exactly these properties; all required unless listed otherwise. */
export const obj = (properties: Record<string, Schema>, required: string[] = Object.keys(properties)): Schema => ({
  type: 'object',
  properties,
  required,
  additionalProperties: false,
});
export const ref = (name: string): Schema => ({ $ref: `#/components/schemas/${name}` });
export const list = (items: Schema, extra: Partial<Schema> = {}): Schema => ({ type: 'array', items, ...extra });
