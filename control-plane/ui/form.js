// The invoke form of a function, generated from its `input_schema`: one field per
// property of an object schema (text, number, checkbox, choice, or JSON for nested
// values), checked here before sending so most mistakes are caught without a call.
// The server checks the input against the schema again whatever this form allows.

import { h } from './dom.js';

function kind(schema) {
  if (!schema || typeof schema !== 'object') return 'json';
  if (Array.isArray(schema.enum) && schema.enum.every((v) => typeof v === 'string')) return 'enum';
  const type = Array.isArray(schema.type) ? schema.type.find((t) => t !== 'null') : schema.type;
  if (['string', 'integer', 'number', 'boolean'].includes(type)) return type;
  return 'json';
}

/** The problems of `value` against the simple keywords of `schema`. */
function check(value, schema, name) {
  const errors = [];
  if (!schema || typeof schema !== 'object') return errors;
  const type = schema.type;
  const is = {
    string: (v) => typeof v === 'string',
    integer: (v) => Number.isInteger(v),
    number: (v) => typeof v === 'number' && Number.isFinite(v),
    boolean: (v) => typeof v === 'boolean',
    object: (v) => v !== null && typeof v === 'object' && !Array.isArray(v),
    array: (v) => Array.isArray(v),
    null: (v) => v === null,
  };
  const types = Array.isArray(type) ? type : type ? [type] : [];
  if (types.length && !types.some((t) => is[t] && is[t](value))) {
    errors.push(`${name} must be ${types.join(' or ')}`);
    return errors;
  }
  if (Array.isArray(schema.enum) && !schema.enum.some((v) => JSON.stringify(v) === JSON.stringify(value))) {
    errors.push(`${name} must be one of ${schema.enum.map((v) => JSON.stringify(v)).join(', ')}`);
  }
  if (typeof value === 'number') {
    if (schema.minimum !== undefined && value < schema.minimum) errors.push(`${name} must be at least ${schema.minimum}`);
    if (schema.maximum !== undefined && value > schema.maximum) errors.push(`${name} must be at most ${schema.maximum}`);
  }
  if (typeof value === 'string') {
    if (schema.minLength !== undefined && value.length < schema.minLength) errors.push(`${name} must have at least ${schema.minLength} characters`);
    if (schema.maxLength !== undefined && value.length > schema.maxLength) errors.push(`${name} must have at most ${schema.maxLength} characters`);
    if (schema.pattern) {
      try {
        if (!new RegExp(schema.pattern, 'u').test(value)) errors.push(`${name} must match ${schema.pattern}`);
      } catch {
        // A pattern this browser cannot read: the server judges it.
      }
    }
  }
  if (is.object(value) && schema.properties) {
    for (const key of schema.required || []) {
      if (!(key in value)) errors.push(`${name}.${key} is required`);
    }
    for (const [key, sub] of Object.entries(schema.properties)) {
      if (key in value) errors.push(...check(value[key], sub, `${name}.${key}`));
    }
  }
  return errors;
}

function field(id, key, schema, required) {
  const k = kind(schema);
  const labelText = `${schema.title || key}${required ? ' (required)' : ''}`;
  const help = schema.description ? h('span', { class: 'muted small', id: `${id}-help` }, schema.description) : null;
  const describedBy = [help ? `${id}-help` : null, `${id}-error`].filter(Boolean).join(' ');
  const common = { id, name: key, 'aria-describedby': describedBy, required: required || null };
  let input;
  if (k === 'boolean') {
    input = h('input', { ...common, type: 'checkbox', checked: schema.default === true });
    return {
      node: h('div', { class: 'field check' }, input, h('label', { for: id }, labelText), help,
        h('span', { class: 'field-error', id: `${id}-error` })),
      read: () => ({ present: true, value: input.checked }),
      input,
    };
  }
  if (k === 'enum') {
    input = h('select', common, required ? null : h('option', { value: '' }, '—'),
      schema.enum.map((v) => h('option', { value: v, selected: schema.default === v }, v)));
  } else if (k === 'json') {
    input = h('textarea', { ...common, rows: 3, spellcheck: 'false', placeholder: 'JSON' },
      schema.default !== undefined ? JSON.stringify(schema.default) : '');
  } else {
    input = h('input', {
      ...common,
      type: k === 'string' ? 'text' : 'number',
      step: k === 'integer' ? '1' : k === 'number' ? 'any' : null,
      value: schema.default !== undefined ? schema.default : null,
      autocomplete: 'off',
    });
  }
  const read = () => {
    const text = input.value;
    if (text === '') return { present: false };
    if (k === 'integer' || k === 'number') {
      const n = Number(text);
      return Number.isNaN(n) ? { error: `${key} is not a number` } : { present: true, value: n };
    }
    if (k === 'json') {
      try {
        return { present: true, value: JSON.parse(text) };
      } catch {
        return { error: `${key} is not valid JSON` };
      }
    }
    return { present: true, value: text };
  };
  return {
    node: h('div', { class: 'field' }, h('label', { for: id }, labelText), input, help,
      h('span', { class: 'field-error', id: `${id}-error` })),
    read,
    input,
  };
}

/**
 * A form for `schema` that calls `submit(input)` with a value that passed the
 * schema's checks, and shows the problems otherwise.
 */
export function invokeForm(schema, submit) {
  const summary = h('div', { class: 'error', role: 'alert', hidden: true });
  const button = h('button', { type: 'submit' }, 'Invoke');
  const objectForm = schema && schema.type === 'object' && schema.properties;
  const required = new Set(objectForm ? schema.required || [] : []);
  const fields = objectForm
    ? Object.entries(schema.properties).map(([key, sub]) => ({ key, ...field(`in-${key}`, key, sub || {}, required.has(key)) }))
    : [{ key: null, ...field('in-json', 'input', { title: 'Input (JSON)' }, false) }];
  const form = h('form', { class: 'invoke', novalidate: true }, fields.map((f) => f.node), summary, button);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const problems = [];
    let input = {};
    for (const f of fields) {
      f.input.removeAttribute('aria-invalid');
      f.node.querySelector('.field-error').textContent = '';
      const read = f.read();
      let mine = [];
      if (read.error) mine.push(read.error);
      else if (!read.present && f.key && required.has(f.key)) mine.push(`${f.key} is required`);
      else if (read.present && f.key) {
        input[f.key] = read.value;
        mine = check(read.value, schema.properties[f.key], f.key);
      } else if (read.present) input = read.value;
      if (mine.length) {
        f.input.setAttribute('aria-invalid', 'true');
        f.node.querySelector('.field-error').textContent = mine.join('; ');
        problems.push(...mine);
      }
    }
    if (!problems.length && schema) problems.push(...check(input, schema, 'input'));
    if (problems.length) {
      summary.hidden = false;
      summary.replaceChildren(h('strong', {}, 'Not sent: '), problems.join('; '));
      const bad = fields.find((f) => f.input.getAttribute('aria-invalid'));
      if (bad) bad.input.focus();
      return;
    }
    summary.hidden = true;
    button.disabled = true;
    try {
      await submit(input);
    } finally {
      button.disabled = false;
    }
  });
  return form;
}
