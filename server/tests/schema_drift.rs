//! `schema.graphql` at the repository root is generated from the code; this fails when they differ.

#[test]
fn checked_in_schema_matches_the_code() {
    let path = neruba::testing::workspace_root().join("schema.graphql");
    let on_disk = std::fs::read_to_string(&path).expect("schema.graphql exists at the repository root");
    let generated = neruba::graphql::sdl();
    assert!(
        on_disk == generated,
        "schema.graphql is out of date with the code: run `cargo run -p neruba -- schema --out schema.graphql`"
    );
}
