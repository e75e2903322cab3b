// A small JSON Schema (2020-12 subset, as OpenAPI 3.1 uses it) validator: the same schemas that document the API in
// /api/openapi.json check every request body and parameter, so the document cannot drift from what is enforced.
// Supported: type (one or a list), properties, required, additionalProperties, items, min/maxItems, min/maxLength,
// pattern, minimum/maximum, enum, $ref to #/components/schemas/*. Anything else is documentation only.

import type { JsonType, Schema } from '../../agent/src/util/json-schema.js';

export type { JsonType, Schema };

/** Where validation failed and why, in words for the household ("name: at most 63 characters"). */
export interface SchemaFailure {
  readonly field: string;
  readonly message: string;
}

function typeOf(v: unknown): JsonType {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number';
  if (typeof v === 'string') return 'string';
  if (typeof v === 'boolean') return 'boolean';
  return 'object';
}

const WORD: Record<JsonType, string> = {
  object: 'an object',
  array: 'a list',
  string: 'text',
  integer: 'a whole number',
  number: 'a number',
  boolean: 'true or false',
  null: 'null',
};

/** Validates `value`; null when it conforms. `components` resolves $ref. */
export function validate(schema: Schema, value: unknown, components: Readonly<Record<string, Schema>> = {}, path = ''): SchemaFailure | null {
  const at = path || 'body';
  if (schema.$ref !== undefined) {
    const name = schema.$ref.replace('#/components/schemas/', '');
    const target = components[name];
    if (!target) throw new Error(`unresolved schema reference ${schema.$ref}`);
    return validate(target, value, components, path);
  }
  if (schema.type !== undefined) {
    const types: readonly JsonType[] = typeof schema.type === 'string' ? [schema.type] : schema.type;
    const t = typeOf(value);
    const ok = types.includes(t) || (t === 'integer' && types.includes('number'));
    if (!ok || (typeof value === 'number' && !Number.isFinite(value))) {
      return { field: at, message: `${at} must be ${types.map((x) => WORD[x]).join(' or ')}` };
    }
  }
  if (schema.enum !== undefined && !schema.enum.includes(value)) {
    return { field: at, message: `${at} must be one of ${schema.enum.map((x) => JSON.stringify(x)).join(', ')}` };
  }
  if (typeof value === 'string') {
    const n = [...value].length;
    if (schema.minLength !== undefined && n < schema.minLength) {
      return { field: at, message: schema.minLength === 1 ? `${at} must not be empty` : `${at} must be at least ${schema.minLength} characters` };
    }
    if (schema.maxLength !== undefined && n > schema.maxLength) return { field: at, message: `${at} must be at most ${schema.maxLength} characters` };
    if (schema.pattern !== undefined && !new RegExp(schema.pattern, 'u').test(value)) {
      return { field: at, message: `${at} is not in the expected form${schema.description ? ` (${schema.description})` : ''}` };
    }
  }
  if (typeof value === 'number') {
    if (schema.minimum !== undefined && value < schema.minimum) return { field: at, message: `${at} must be at least ${schema.minimum}` };
    if (schema.maximum !== undefined && value > schema.maximum) return { field: at, message: `${at} must be at most ${schema.maximum}` };
  }
  if (Array.isArray(value)) {
    if (schema.minItems !== undefined && value.length < schema.minItems) return { field: at, message: `${at} needs at least ${schema.minItems} entries` };
    if (schema.maxItems !== undefined && value.length > schema.maxItems) return { field: at, message: `${at} may have at most ${schema.maxItems} entries` };
    if (schema.items) {
      for (let i = 0; i < value.length; i++) {
        const f = validate(schema.items, value[i], components, `${path || 'body'}[${i}]`);
        if (f) return f;
      }
    }
  }
  if (typeOf(value) === 'object' && (schema.properties || schema.required || schema.additionalProperties !== undefined)) {
    const obj = value as Record<string, unknown>;
    for (const k of schema.required ?? []) {
      if (!Object.hasOwn(obj, k) || obj[k] === undefined) return { field: k, message: `${k} is required` };
    }
    for (const [k, v] of Object.entries(obj)) {
      const sub = schema.properties?.[k];
      const field = path ? `${path}.${k}` : k;
      if (sub) {
        const f = validate(sub, v, components, field);
        if (f) return f;
      } else if (schema.additionalProperties === false) {
        return { field, message: `${field} is not a known field` };
      } else if (typeof schema.additionalProperties === 'object') {
        const f = validate(schema.additionalProperties, v, components, field);
        if (f) return f;
      }
    }
  }
  return null;
}
