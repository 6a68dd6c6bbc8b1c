//! Every GraphQL operation shown in README.md and docs/*.md validates against `schema.graphql`,
//! and the schema itself passes graphql-js's validation: an implementation independent of
//! async-graphql, the one frontend tooling (codegen, Apollo, urql) builds on. The check is
//! `tools/graphql-check/check.mjs`; `scripts/test.sh` also runs it as its own step. Without
//! `node` these tests say so and pass, so a machine without Node can still run `cargo test`.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// `node check.mjs args…`, after installing graphql-js from the lock file when missing; `None`
/// when node is not installed.
fn graphql_check(args: &[&Path]) -> Option<Output> {
    if Command::new("node").arg("--version").output().is_err() {
        eprintln!(
            "SKIPPED: `node` is not installed, so the documented GraphQL operations were not checked (scripts/setup.sh installs it)"
        );
        return None;
    }
    let tool = root().join("tools/graphql-check");
    if !tool.join("node_modules/graphql/package.json").exists() {
        let npm = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&tool)
            .output()
            .expect("node is installed but npm is not: install npm");
        assert!(
            npm.status.success(),
            "npm ci in tools/graphql-check failed:\n{}",
            String::from_utf8_lossy(&npm.stderr)
        );
    }
    Some(
        Command::new("node")
            .arg(tool.join("check.mjs"))
            .args(args)
            .output()
            .expect("node runs"),
    )
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn the_schema_and_every_documented_operation_pass_graphql_js() {
    let Some(output) = graphql_check(&[]) else { return };
    assert!(
        output.status.success(),
        "documented GraphQL operations that do not fit schema.graphql (fix the docs or the schema):\n{}",
        text(&output)
    );
}

#[test]
fn a_broken_example_or_schema_is_caught_with_its_line() {
    let dir = std::env::temp_dir().join(format!("neruba-graphql-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let doc = dir.join("guide.md");
    std::fs::write(
        &doc,
        concat!(
            "# A guide\n",
            "\n",
            "```graphql\n",
            "{ viewer { kind } }\n",
            "mutation { createProject(input: { name: \"x\" }) { project { nope } } }\n",
            "```\n",
            "\n",
            "```sh\n",
            "curl -s localhost:8080/graphql \\\n",
            "  -d '{\"query\":\"{ viewer { kind scopez } }\"}'\n",
            "```\n",
            "\n",
            "```json\n",
            "{\"type\":\"subscribe\",\"payload\":{\"query\":\"subscription { projectEvents { kind } }\"}}\n",
            "```\n",
        ),
    )
    .unwrap();
    let Some(output) = graphql_check(&[&doc]) else { return };
    let said = text(&output);
    assert_eq!(output.status.code(), Some(1), "{said}");
    // The wrong field of the second operation of the block, on its own line…
    assert!(said.contains("guide.md:5:") && said.contains("\"nope\""), "{said}");
    // …the one inside the curl command's JSON…
    assert!(said.contains("guide.md:10:") && said.contains("\"scopez\""), "{said}");
    // …and nothing else: the valid operations pass.
    assert!(said.contains("2 problem(s) in 4 documented operation(s)"), "{said}");

    // A schema that graphql-js refuses fails the check before any operation is looked at.
    let schema = dir.join("schema.graphql");
    std::fs::write(&schema, "type Query { a: Missing }\n").unwrap();
    let Some(output) = graphql_check(&[Path::new("--schema"), &schema, &doc]) else {
        return;
    };
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(text(&output).contains("Missing"), "{}", text(&output));
    std::fs::write(&schema, "type Query { a: Int }\ntype Query { b: Int }\n").unwrap();
    let Some(output) = graphql_check(&[Path::new("--schema"), &schema, &doc]) else {
        return;
    };
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let _ = std::fs::remove_dir_all(&dir);
}
