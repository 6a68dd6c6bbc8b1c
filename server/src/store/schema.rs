// Diesel table definitions, kept in step with `migrations/` (a test checks them against the
// migrated database: tests/store_schema.rs).

diesel::table! {
    projects (id) {
        id -> Varchar,
        name -> Varchar,
        created_at -> Datetime,
    }
}

diesel::table! {
    api_keys (id) {
        id -> Varchar,
        project_id -> Varchar,
        name -> Varchar,
        prefix -> Varchar,
        secret_hash -> Binary,
        scopes -> Varchar,
        created_by -> Varchar,
        created_at -> Datetime,
        last_used_at -> Nullable<Datetime>,
        revoked_at -> Nullable<Datetime>,
    }
}

diesel::joinable!(api_keys -> projects (project_id));
diesel::allow_tables_to_appear_in_same_query!(projects, api_keys);
