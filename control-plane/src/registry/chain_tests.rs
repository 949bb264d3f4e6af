//! Unit tests of chains and triggers: conditions, rules, input mappings, parsing,
//! deploy problems and serialization.

use serde_json::{json, Value};

use super::*;
use crate::registry::manifest::{self, from_json, parse_manifest};

fn rule(value: Value) -> Rule {
    serde_json::from_value(value).unwrap_or_else(|err| panic!("{err}"))
}

fn holds(rule_json: Value, context: &Value) -> bool {
    rule(rule_json).holds(context)
}

fn finished(status: &str) -> Value {
    json!({
        "executionId": "e1", "function": "parent", "status": status,
        "input": {"order": 7, "keep": "in"},
        "output": {"total": 150, "name": "widget", "tags": ["a", "b"], "items": [{"id": "x1"}, {"id": "x2"}],
                   "none": null, "ratio": 1.0, "nested": {"deep": {"n": 3}}},
        "error": null, "attempt": 1, "exitCode": 0
    })
}

#[test]
fn named_conditions_follow_the_parent_status() {
    let cases = [
        (Condition::Always, [true, true, true, true]),
        (Condition::OnSuccess, [true, false, false, false]),
        (Condition::OnFailure, [false, true, true, false]),
        (Condition::OnTimeout, [false, false, true, false]),
    ];
    for (condition, expected) in cases {
        for (status, expect) in ["success", "error", "timeout", "cancelled"]
            .into_iter()
            .zip(expected)
        {
            assert_eq!(
                condition.holds(&finished(status)),
                expect,
                "{condition:?} on {status}"
            );
        }
    }
    assert!(!Condition::OnSuccess.holds(&json!({})));
    assert!(Condition::Always.holds(&json!({})));
    let rule = Condition::Rule(rule(
        json!({"path": "output.total", "op": "gt", "value": 100}),
    ));
    assert!(rule.holds(&finished("success")));
    assert!(
        rule.holds(&finished("error")),
        "a rule alone ignores status"
    );
    let on_error_code = Condition::Rule(self::rule(
        json!({"all": [{"path": "status", "op": "eq", "value": "error"}, {"path": "error.code", "op": "eq", "value": "BOOM"}]}),
    ));
    let mut failed = finished("error");
    failed["error"] = json!({"code": "BOOM", "message": "it broke"});
    assert!(on_error_code.holds(&failed));
    assert!(!on_error_code.holds(&finished("error")));
}

#[test]
fn comparisons() {
    let ctx = finished("success");
    let check = |path: &str, op: &str, value: Value| {
        holds(json!({"path": path, "op": op, "value": value}), &ctx)
    };
    // eq / ne: numbers by value, strings, null, structures.
    assert!(check("output.total", "eq", json!(150)));
    assert!(check("output.total", "eq", json!(150.0)));
    assert!(check("output.ratio", "eq", json!(1)));
    assert!(!check("output.total", "eq", json!("150")));
    assert!(check("output.name", "eq", json!("widget")));
    assert!(check("output.none", "eq", Value::Null));
    assert!(check("output.tags", "eq", json!(["a", "b"])));
    assert!(check("output.nested", "eq", json!({"deep": {"n": 3.0}})));
    assert!(check("output.total", "ne", json!(151)));
    assert!(!check("output.total", "ne", json!(150)));
    // gt / gte / lt / lte: numbers, strings lexically, other types never.
    assert!(check("output.total", "gt", json!(100)));
    assert!(!check("output.total", "gt", json!(150)));
    assert!(check("output.total", "gte", json!(150)));
    assert!(check("output.total", "lt", json!(150.5)));
    assert!(check("output.total", "lte", json!(150)));
    assert!(!check("output.total", "lte", json!(-3)));
    assert!(check("output.name", "gt", json!("apple")));
    assert!(check("output.name", "lt", json!("x")));
    assert!(check("output.name", "gte", json!("widget")));
    assert!(!check("output.name", "gt", json!(5)), "string vs number");
    assert!(
        !check("output.total", "lt", json!("zzz")),
        "number vs string"
    );
    assert!(!check("output.tags", "gt", json!(1)), "lists do not order");
    assert!(check("output.total", "gt", json!(-1)), "i64 vs u64");
    // exists.
    assert!(holds(json!({"path": "output.total", "op": "exists"}), &ctx));
    assert!(check("output.none", "exists", json!(true)), "null exists");
    assert!(!check("output.total", "exists", json!(false)));
    assert!(check("output.missing", "exists", json!(false)));
    assert!(!holds(
        json!({"path": "output.missing", "op": "exists"}),
        &ctx
    ));
    // in.
    assert!(check("output.name", "in", json!(["gadget", "widget"])));
    assert!(check("output.total", "in", json!([1, 150.0])));
    assert!(!check("output.name", "in", json!(["gadget"])));
    assert!(!check("output.name", "in", json!([])));
    // contains: strings and lists.
    assert!(check("output.name", "contains", json!("dge")));
    assert!(!check("output.name", "contains", json!("gad")));
    assert!(check("output.tags", "contains", json!("b")));
    assert!(!check("output.tags", "contains", json!("c")));
    assert!(check("output.items", "contains", json!({"id": "x2"})));
    assert!(
        !check("output.total", "contains", json!(1)),
        "numbers do not contain"
    );
    assert!(!check("output.name", "contains", json!(1)));
    // A missing path: everything false but `ne` and `exists: false`.
    for (op, value, expect) in [
        ("eq", json!(1), false),
        ("eq", Value::Null, false),
        ("ne", json!(1), true),
        ("gt", json!(1), false),
        ("gte", json!(1), false),
        ("lt", json!(1), false),
        ("lte", json!(1), false),
        ("exists", json!(true), false),
        ("exists", json!(false), true),
        ("in", json!([1]), false),
        ("contains", json!("a"), false),
    ] {
        for path in ["output.missing", "output.total.deeper", "nothing.at.all"] {
            assert_eq!(check(path, op, value.clone()), expect, "{path} {op}");
        }
    }
}

#[test]
fn paths_walk_objects_and_arrays() {
    let ctx = finished("success");
    assert_eq!(lookup(&ctx, "output.items.1.id"), Some(&json!("x2")));
    assert_eq!(lookup(&ctx, "output.nested.deep.n"), Some(&json!(3)));
    assert_eq!(lookup(&ctx, "status"), Some(&json!("success")));
    assert_eq!(lookup(&ctx, "output.items.2.id"), None);
    assert_eq!(lookup(&ctx, "output.items.+1.id"), None);
    assert_eq!(lookup(&ctx, "output.items.first"), None);
    assert_eq!(lookup(&ctx, "output.name.0"), None);
    assert_eq!(lookup(&ctx, ""), None);
    assert_eq!(lookup(&ctx, "output..total"), None);
    assert_eq!(lookup(&ctx, "output.total."), None);
    let keyed = json!({"a": {"0": "zero", "": "empty"}});
    assert_eq!(lookup(&keyed, "a.0"), Some(&json!("zero")));
    assert_eq!(lookup(&keyed, "a."), None);
}

#[test]
fn all_any_and_not_nest() {
    let ctx = finished("success");
    let big = json!({"path": "output.total", "op": "gt", "value": 100});
    let cheap = json!({"path": "output.total", "op": "lt", "value": 10});
    let named = json!({"path": "output.name", "op": "eq", "value": "widget"});
    assert!(holds(json!({"all": [big, named]}), &ctx));
    assert!(!holds(json!({"all": [big, cheap]}), &ctx));
    assert!(holds(json!({"any": [cheap, named]}), &ctx));
    assert!(!holds(json!({"any": [cheap]}), &ctx));
    assert!(holds(json!({"not": cheap}), &ctx));
    assert!(!holds(json!({"not": {"not": cheap}}), &ctx));
    assert!(holds(
        json!({"all": [{"any": [cheap, {"not": cheap}]}, {"not": {"all": [big, cheap]}}]}),
        &ctx
    ));
    assert!(holds(
        json!({"not": {"path": "output.missing", "op": "eq", "value": 1}}),
        &ctx
    ));
}

fn mapping(value: Value) -> InputMapping {
    serde_json::from_value(value).unwrap_or_else(|err| panic!("{err}"))
}

#[test]
fn full_output_and_merge() {
    let ctx = finished("success");
    assert_eq!(InputMapping::FullOutput.apply(&ctx), ctx["output"]);
    assert_eq!(InputMapping::FullOutput.apply(&json!({})), Value::Null);
    let merged = InputMapping::Merge.apply(&json!({
        "input": {"a": 1, "b": 2}, "output": {"b": 3, "c": {"d": 4}}
    }));
    assert_eq!(merged, json!({"a": 1, "b": 3, "c": {"d": 4}}));
    for (input, output) in [
        (json!("text"), json!({"b": 3})),
        (json!({"a": 1}), json!([1, 2])),
        (Value::Null, json!(5)),
    ] {
        let ctx = json!({"input": input, "output": output.clone()});
        assert_eq!(InputMapping::Merge.apply(&ctx), output);
    }
    // A failed parent has no output: its input goes on.
    for ctx in [
        json!({"input": {"a": 1}}),
        json!({"input": {"a": 1}, "output": null}),
    ] {
        assert_eq!(InputMapping::Merge.apply(&ctx), json!({"a": 1}));
    }
}

#[test]
fn fields_build_an_object() {
    let ctx = finished("success");
    let fields = mapping(json!({"fields": {
        "customer.id": "input.order",
        "customer.name": "output.name",
        "first": "output.items.0.id",
        "deep.a.b.c": "output.nested.deep.n",
        "absent": "output.missing",
        "absent_too.x": "output.missing",
        "whole": "output.tags",
        "status": "status"
    }}));
    assert_eq!(
        fields.apply(&ctx),
        json!({
            "customer": {"id": 7, "name": "widget"},
            "first": "x1",
            "deep": {"a": {"b": {"c": 3}}},
            "whole": ["a", "b"],
            "status": "success"
        })
    );
    assert_eq!(mapping(json!({"fields": {}})).apply(&ctx), json!({}));
}

#[test]
fn templates_fill_placeholders() {
    let ctx = finished("success");
    let template = mapping(json!({"template": {
        "total": "{{output.total}}",
        "spaced": "{{ output.total }}",
        "tags": "{{output.tags}}",
        "none": "{{output.none}}",
        "missing": "{{output.missing}}",
        "text": "order {{input.order}} of {{output.name}}: {{output.total}} {{output.tags}}{{output.missing}}!",
        "null_text": "was {{output.none}}",
        "list": ["{{output.items.0.id}}", "id-{{output.items.1.id}}", 3, true, null],
        "nested": {"deeper": {"n": "{{output.nested.deep.n}}", "obj": "{{output.nested}}"}},
        "plain": "no placeholders } {",
        "number": 12
    }}));
    assert_eq!(
        template.apply(&ctx),
        json!({
            "total": 150,
            "spaced": 150,
            "tags": ["a", "b"],
            "none": null,
            "missing": null,
            "text": "order 7 of widget: 150 [\"a\",\"b\"]!",
            "null_text": "was null",
            "list": ["x1", "id-x2", 3, true, null],
            "nested": {"deeper": {"n": 3, "obj": {"deep": {"n": 3}}}},
            "plain": "no placeholders } {",
            "number": 12
        })
    );
    assert_eq!(
        mapping(json!({"template": "{{output}}"})).apply(&ctx),
        ctx["output"]
    );
    assert_eq!(
        mapping(json!({"template": " {{output.total}}"})).apply(&ctx),
        json!(" 150")
    );
    assert_eq!(
        mapping(json!({"template": 5})).apply(&ctx),
        json!(5),
        "a template without strings is itself"
    );
}

#[test]
fn triggers_match_their_type_and_rule() {
    let plain: TriggerSpec = serde_json::from_value(json!({"type": "order.created"})).unwrap();
    assert!(plain.matches("order.created", &json!({})));
    assert!(plain.matches("order.created", &Value::Null));
    assert!(!plain.matches("order.updated", &json!({})));
    assert!(!plain.matches("order.created.v2", &json!({})));
    let big: TriggerSpec = serde_json::from_value(json!({
        "type": "order.created",
        "condition": {"all": [
            {"path": "data.total", "op": "gte", "value": 100},
            {"path": "type", "op": "eq", "value": "order.created"}
        ]}
    }))
    .unwrap();
    assert!(big.matches("order.created", &json!({"total": 100})));
    assert!(!big.matches("order.created", &json!({"total": 99})));
    assert!(!big.matches("order.created", &json!({})));
    assert!(!big.matches("order.updated", &json!({"total": 500})));
}

/// The error of deploying a function with these chains and triggers.
fn deploy_error(chains: Value, triggers: Value) -> String {
    let manifest = json!({"name": "f", "command": "true", "chains": chains, "triggers": triggers});
    from_json(&manifest).unwrap_err()
}

#[test]
fn parse_errors_name_their_place() {
    let ok = json!({"target": "next"});
    let chain_error = |chain: Value| deploy_error(json!([ok, chain]), json!([]));
    let cases = [
        (
            json!({"target": "b", "condition": {"path": "output.x", "op": "bigger", "value": 1}}),
            "chains[1].condition: unknown op \"bigger\"; use one of eq, ne, gt, gte, lt, lte, exists, in, contains",
        ),
        (
            json!({"target": "b", "condition": "sometimes"}),
            "chains[1].condition: unknown condition \"sometimes\"; use one of always, on_success, on_failure, on_timeout, or a rule object",
        ),
        (
            json!({"target": "b", "condition": {"path": "output.x", "op": "in", "value": "a"}}),
            "chains[1].condition: `in` needs a `value` that is a list, got a string",
        ),
        (
            json!({"target": "b", "condition": {"path": "output.x", "op": "in"}}),
            "chains[1].condition: `in` needs a `value` that is a list, got none",
        ),
        (
            json!({"target": "b", "condition": {"path": "output.x", "op": "eq"}}),
            "chains[1].condition: `eq` needs a `value`",
        ),
        (
            json!({"target": "b", "condition": {"path": "output.x", "op": "gt", "value": [1]}}),
            "chains[1].condition: `gt` compares numbers or strings; `value` is a list",
        ),
        (
            json!({"target": "b", "condition": {"path": "output.x", "op": "exists", "value": "yes"}}),
            "chains[1].condition: `exists` takes `value` true or false, got a string",
        ),
        (
            json!({"target": "b", "condition": {"path": "x", "op": "eq", "value": 1, "all": []}}),
            "chains[1].condition: a rule has either `path`, `op` and `value`, or exactly one of `all`, `any`, `not`",
        ),
        (
            json!({"target": "b", "condition": {}}),
            "chains[1].condition: a rule has either",
        ),
        (
            json!({"target": "b", "condition": {"path": "x", "op": "eq", "valeu": 1}}),
            "chains[1].condition: unknown field `valeu`, expected one of `path`, `op`, `value`, `all`, `any`, `not`",
        ),
        (
            json!({"target": "b", "condition": {"any": [{"path": "x", "op": "eq", "value": 1}, {"not": {"path": 3, "op": "eq", "value": 1}}]}}),
            "chains[1].condition.any[1].not.path: expected a dot-separated path such as \"output.total\", got a number",
        ),
        (
            json!({"target": "b", "condition": {"all": {"path": "x"}}}),
            "chains[1].condition.all: expected a list of rules, got an object",
        ),
        (
            json!({"target": "b", "condition": {"op": "eq", "value": 1}}),
            "chains[1].condition: missing field `path`",
        ),
        (
            json!({"target": "b", "condition": {"path": "x", "value": 1}}),
            "chains[1].condition: missing field `op`; use one of eq,",
        ),
        (
            json!({"target": "b", "condition": 3}),
            "chains[1].condition: expected one of always, on_success, on_failure, on_timeout, or a rule object, got a number",
        ),
        (
            json!({"tagret": "b"}),
            "chains[1]: unknown field `tagret`, expected one of `target`, `condition`, `input`, `delay_ms`",
        ),
        (json!({"input": "merge"}), "chains[1]: missing field `target`"),
        (
            json!({"target": 5}),
            "chains[1].target: expected a function name, got a number",
        ),
        (
            json!("next"),
            "chains[1]: expected a chain object such as {\"target\": \"next\"}, got a string",
        ),
        (
            json!({"target": "b", "delay_ms": -5}),
            "chains[1].delay_ms: expected a whole number of milliseconds, got -5",
        ),
        (
            json!({"target": "b", "input": "everything"}),
            "chains[1].input: unknown input mapping \"everything\"; use full_output, merge,",
        ),
        (
            json!({"target": "b", "input": {"field": {}}}),
            "chains[1].input: unknown field `field`, expected one of `fields`, `template`",
        ),
        (
            json!({"target": "b", "input": {"fields": {}, "template": 1}}),
            "chains[1].input: expected a mapping, got an object;",
        ),
        (
            json!({"target": "b", "input": {"fields": {"a": 1}}}),
            "chains[1].input.fields[\"a\"]: expected a source path, got a number",
        ),
        (
            json!({"target": "b", "input": {"fields": ["a"]}}),
            "chains[1].input.fields: expected an object of target path: source path",
        ),
    ];
    for (chain, expected) in cases {
        let err = chain_error(chain.clone());
        assert!(err.starts_with(expected), "{chain}:\n{err}\n{expected}");
    }
    assert_eq!(
        deploy_error(json!({"target": "b"}), json!([])),
        "chains: expected a list, got an object"
    );
    let trigger_cases = [
        (
            json!({"type": "a", "condition": "on_success"}),
            "triggers[0].condition: a trigger's condition is a rule object",
        ),
        (
            json!({"type": "a", "condition": {"path": "data.x", "op": "like", "value": 1}}),
            "triggers[0].condition: unknown op \"like\"",
        ),
        (json!({"kind": "a"}), "triggers[0]: unknown field `kind`"),
        (json!({}), "triggers[0]: missing field `type`"),
    ];
    for (trigger, expected) in trigger_cases {
        let err = deploy_error(json!([]), json!([trigger]));
        assert!(err.starts_with(expected), "{trigger}:\n{err}\n{expected}");
    }
    // YAML manifests say where too.
    let err = parse_manifest(
        "name: f\ncommand: 'true'\nchains:\n  - target: b\n    condition: {path: x, op: bigger, value: 1}\n",
    )
    .unwrap_err();
    assert!(
        err.contains("chains[0].condition: unknown op \"bigger\""),
        "{err}"
    );
}

fn spec_problems(chains: Value, triggers: Value) -> Vec<String> {
    let manifest = json!({"name": "f", "command": "true", "chains": chains, "triggers": triggers});
    manifest::problems(&from_json(&manifest).unwrap_or_else(|err| panic!("{err}")))
}

#[test]
fn deploy_problems_name_their_place() {
    let found = spec_problems(
        json!([
            {"target": "Bad Name"},
            {"target": "b", "condition": {"all": [
                {"path": "", "op": "exists"},
                {"path": "output..x", "op": "eq", "value": 1},
                {"any": []},
                {"not": {"all": []}}
            ]}},
            {"target": "c", "input": {"template": {"a": ["ok {{output.x}}", "{{output.x"], "b": "{{}}", "c": "{{a..b}} {{x}}"}}},
            {"target": "d", "input": {"fields": {"customer": "output.c", "customer.id": "output.id", "x": "", "y..z": "output.y"}}},
            {"target": "e", "delay_ms": MAX_DELAY_MS + 1}
        ]),
        json!([{"type": " "}, {"type": "t", "condition": {"path": "data.", "op": "exists"}}]),
    );
    let expected = [
        "chains[0].target \"Bad Name\" is not a valid function name",
        "chains[1].condition.all[0]: the path is empty",
        "chains[1].condition.all[1]: path \"output..x\" has an empty segment",
        "chains[1].condition.all[2].any lists no rules",
        "chains[1].condition.all[3].not.all lists no rules",
        "chains[2].input.template.a[1]: placeholder \"{{output.x\" is not closed with }}",
        "chains[2].input.template.b: placeholder {{}}: the path is empty",
        "chains[2].input.template.c: placeholder {{a..b}}: path \"a..b\" has an empty segment",
        "chains[3].input.fields[\"customer.id\"]: target \"customer.id\" is inside target \"customer\"",
        "chains[3].input.fields[\"x\"]: source the path is empty",
        "chains[3].input.fields[\"y..z\"]: target path \"y..z\" has an empty segment",
        "chains[4].delay_ms must be at most 86400000 (one day), got 86400001",
        "triggers[0].type is empty",
        "triggers[1].condition: path \"data.\" has an empty segment",
    ];
    assert_eq!(found, expected);
    // Rules built in code are checked as parsed ones are.
    let built = Rule::Compare {
        path: "x".into(),
        op: Op::In,
        value: Some(json!(1)),
    };
    let chain = ChainSpec {
        target: "g".into(),
        condition: Condition::Rule(built),
        input: InputMapping::FullOutput,
        delay_ms: 0,
    };
    assert_eq!(
        problems(&[chain], &[]),
        ["chains[0].condition: `in` needs a `value` that is a list, got a number"]
    );
}

#[test]
fn raw_chains_stay_valid() {
    assert!(spec_problems(json!([{"target": "plain"}]), json!([])).is_empty());
    assert!(spec_problems(
        json!([{"target": "f", "delay_ms": MAX_DELAY_MS}]),
        json!([])
    )
    .is_empty());
    let manifest = json!({"name": "f", "command": "true", "chains": [{"target": "plain"}]});
    let spec = from_json(&manifest).unwrap();
    assert_eq!(
        spec.chains,
        [ChainSpec {
            target: "plain".into(),
            condition: Condition::OnSuccess,
            input: InputMapping::FullOutput,
            delay_ms: 0,
        }]
    );
}

#[test]
fn serialization_round_trips_in_canonical_form() {
    let written = json!([
        {"target": "a"},
        {"target": "b", "condition": "always", "input": "merge", "delay_ms": 250},
        {"target": "c", "condition": "on_failure", "input": {"fields": {"to.x": "output.y"}}},
        {"target": "d", "condition": "on_timeout", "input": {"template": {"n": "{{output.n}}", "list": [1, "x"]}}},
        {"target": "e", "condition": {"any": [
            {"path": "output.total", "op": "gt", "value": 100},
            {"not": {"path": "output.tag", "op": "exists"}},
            {"all": [{"path": "output.v", "op": "eq", "value": null}, {"path": "output.w", "op": "exists", "value": false}]},
            {"path": "output.s", "op": "in", "value": ["a", 1]}
        ]}}
    ]);
    let chains: Vec<ChainSpec> = serde_json::from_value(written.clone()).unwrap();
    assert_eq!(serde_json::to_value(&chains).unwrap(), written);
    let again: Vec<ChainSpec> =
        serde_json::from_value(serde_json::to_value(&chains).unwrap()).unwrap();
    assert_eq!(again, chains);
    // Written defaults are dropped: both forms are the same definition.
    let explicit =
        json!({"target": "a", "condition": "on_success", "input": "full_output", "delay_ms": 0});
    let chain: ChainSpec = serde_json::from_value(explicit).unwrap();
    assert_eq!(
        serde_json::to_value(&chain).unwrap(),
        json!({"target": "a"})
    );
    let triggers = json!([{"type": "t"}, {"type": "u", "condition": {"path": "data.x", "op": "contains", "value": "y"}}]);
    let parsed: Vec<TriggerSpec> = serde_json::from_value(triggers.clone()).unwrap();
    assert_eq!(parsed[1].event_type, "u");
    assert_eq!(serde_json::to_value(&parsed).unwrap(), triggers);
    assert_eq!(serde_json::to_value(Op::Gte).unwrap(), json!("gte"));
    assert_eq!(serde_json::from_value::<Op>(json!("lte")).unwrap(), Op::Lte);
    assert!(serde_json::from_value::<Op>(json!("big")).is_err());
    // A manifest with chains hashes the same however its defaults were written.
    let hash = |chains: Value| {
        let manifest = json!({"name": "f", "command": "true", "chains": chains});
        crate::registry::content_hash(&from_json(&manifest).unwrap())
    };
    assert_eq!(
        hash(json!([{"target": "a"}])),
        hash(json!([{"delay_ms": 0, "target": "a", "condition": "on_success"}]))
    );
    assert_ne!(
        hash(json!([{"target": "a"}])),
        hash(json!([{"target": "a", "delay_ms": 1}]))
    );
}
