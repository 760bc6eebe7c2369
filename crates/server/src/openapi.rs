//! The OpenAPI 3.1 document of the server's HTTP interface, served at `/api/openapi.json`.

use serde_json::{Value, json};

fn error_schema() -> Value {
    json!({
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {"type": "string"},
            "position": {
                "type": "object",
                "description": "Where in the query the error is (1-based line and column, 0-based byte offset).",
                "properties": {
                    "line": {"type": "integer"}, "column": {"type": "integer"},
                    "offset": {"type": "integer"}, "length": {"type": "integer"}
                }
            }
        }
    })
}

fn table_schema() -> Value {
    json!({
        "type": "object",
        "required": ["columns", "rows"],
        "properties": {
            "columns": {"type": "array", "items": {"type": "string"}},
            "rows": {"type": "array", "items": {"type": "array", "items": {}},
                     "description": "One array per row, values in column order; numbers are JSON numbers."},
            "truncated": {"type": "boolean", "description": "More rows than the limit (10,000 at most)."},
            "elapsed_ms": {"type": "number"}
        }
    })
}

fn json_body(schema: Value) -> Value {
    json!({"required": true, "content": {"application/json": {"schema": schema}}})
}

fn ok(description: &str, schema: Value) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": schema}}})
}

fn bad() -> Value {
    json!({"description": "Bad request", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

fn time_params() -> Value {
    json!([
        {"name": "start", "in": "query", "schema": {"type": "string"},
         "description": "Unix seconds, RFC 3339, or relative (-1h, -30m)."},
        {"name": "end", "in": "query", "schema": {"type": "string"}}
    ])
}

/// The document.
pub fn document() -> Value {
    let firehose_response = json!({
        "type": "object",
        "required": ["requestId", "timestamp"],
        "properties": {
            "requestId": {"type": "string"},
            "timestamp": {"type": "integer", "description": "Milliseconds since the epoch."},
            "errorMessage": {"type": "string"}
        }
    });
    let mut findings_params = time_params();
    findings_params.as_array_mut().expect("array").push(json!(
        {"name": "min_severity", "in": "query", "schema": {"type": "string", "enum": ["low", "medium", "high", "critical"]}}
    ));
    findings_params.as_array_mut().expect("array").push(json!(
        {"name": "state", "in": "query", "schema": {"type": "string", "enum": ["new", "ongoing", "resolved", "active"]}}
    ));
    findings_params.as_array_mut().expect("array").push(json!(
        {"name": "fresh", "in": "query", "description": "Run the detections over the range now instead of reading the stored findings.", "schema": {"type": "boolean"}}
    ));
    let mut diagnose_params = time_params();
    for (name, kind) in [("src", "string"), ("dst", "string"), ("port", "integer")] {
        diagnose_params
            .as_array_mut()
            .expect("array")
            .push(json!({"name": name, "in": "query", "schema": {"type": kind}}));
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "flowscope",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Query a VPC Flow Logs lake (SQL, CloudWatch Logs Insights), read detections, diagnoses and alarms, and deliver flow logs (Amazon Data Firehose HTTP endpoint, CloudWatch Logs subscriptions)."
        },
        "paths": {
            "/api/sql": {"post": {
                "summary": "Run one SQL statement over the table `flows`.",
                "requestBody": json_body(json!({"type": "object", "required": ["sql"], "properties": {
                    "sql": {"type": "string"}, "limit": {"type": "integer", "maximum": 10000}}})),
                "responses": {"200": ok("Result table", json!({"$ref": "#/components/schemas/Table"})), "400": bad()}
            }},
            "/api/insights": {"post": {
                "summary": "Run a CloudWatch Logs Insights query.",
                "requestBody": json_body(json!({"type": "object", "required": ["query"], "properties": {
                    "query": {"type": "string"},
                    "start": {"oneOf": [{"type": "integer"}, {"type": "string"}]},
                    "end": {"oneOf": [{"type": "integer"}, {"type": "string"}]},
                    "limit": {"type": "integer", "maximum": 10000}}})),
                "responses": {"200": ok("Result table", json!({"$ref": "#/components/schemas/Table"})), "400": bad()}
            }},
            "/api/findings": {"get": {
                "summary": "The stored findings whose records overlap the range (each with state new, ongoing or resolved, found_at, confirmed_at), active first, most severe first; fresh=true runs every detection over the range instead.",
                "parameters": findings_params,
                "responses": {"200": ok("Findings, most severe first", json!({"type": "object", "properties": {
                    "findings": {"type": "array", "items": {"type": "object"}},
                    "warnings": {"type": "array", "items": {"type": "string"}},
                    "runs": {"type": "integer"},
                    "detected_at": {"type": ["string", "null"]},
                    "up_to_date": {"type": "boolean"}}})), "400": bad()}
            }},
            "/api/live": {"get": {
                "summary": "Server-sent events: an `update` event (JSON: generation, records, pending, findings, alarms, sources with their lag) whenever any of it changes.",
                "responses": {"200": {"description": "text/event-stream"}, "503": {"description": "Too many live streams open"}}
            }},
            "/api/diagnose": {"get": {
                "summary": "Explain rejected connections: security group or network ACL, which direction, and the fix.",
                "parameters": diagnose_params,
                "responses": {"200": ok("Diagnoses", json!({"type": "object", "properties": {
                    "diagnoses": {"type": "array", "items": {"type": "object", "properties": {
                        "at_edge": {"type": "boolean", "description": "Requests from the internet refused on the way in: the controls doing their job"}}}},
                    "refused_at_edge": {"type": "object", "properties": {
                        "sources": {"type": "integer"}, "records": {"type": "integer"}}}}})), "400": bad()}
            }},
            "/api/alarms": {"get": {
                "summary": "The live alarms: state, settings, transitions, recent datapoints.",
                "responses": {"200": ok("Alarms", json!({"type": "object", "properties": {
                    "alarms": {"type": "array", "items": {"type": "object"}}}}))}
            }},
            "/api/status": {"get": {
                "summary": "Intake counters (deliveries, duplicates, records, rejected lines, commits, pending).",
                "responses": {"200": ok("Status", json!({"type": "object"}))}
            }},
            "/firehose": {"post": {
                "summary": "Amazon Data Firehose HTTP endpoint delivery: records[].data is base64 of flow log lines.",
                "parameters": [
                    {"name": "X-Amz-Firehose-Access-Key", "in": "header", "schema": {"type": "string"}},
                    {"name": "X-Amz-Firehose-Request-Id", "in": "header", "schema": {"type": "string"}}
                ],
                "requestBody": json_body(json!({"type": "object", "required": ["requestId", "records"], "properties": {
                    "requestId": {"type": "string"}, "timestamp": {"type": "integer"},
                    "records": {"type": "array", "maxItems": 10000, "items": {"type": "object", "required": ["data"],
                        "properties": {"data": {"type": "string", "contentEncoding": "base64"}}}}}})),
                "responses": {
                    "200": ok("Taken (durable, queryable); a repeated requestId is answered 200 and not taken twice", firehose_response.clone()),
                    "400": ok("Malformed request; nothing taken", firehose_response.clone()),
                    "401": ok("No access key", firehose_response.clone()),
                    "403": ok("Wrong access key", firehose_response.clone()),
                    "413": ok("Body too large", firehose_response)
                }
            }},
            "/cloudwatch": {"post": {
                "summary": "CloudWatch Logs subscription payload (gzip JSON, or base64 of it, or JSON).",
                "responses": {"200": ok("Taken", json!({"type": "object"})), "400": bad(), "401": bad(), "403": bad(), "413": bad()}
            }}
        },
        "components": {"schemas": {"Error": error_schema(), "Table": table_schema()}}
    })
}
