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

diesel::table! {
    customers (id) {
        id -> Varchar,
        project_id -> Varchar,
        external_id -> Varchar,
        name -> Nullable<Varchar>,
        email -> Nullable<Varchar>,
        currency -> Nullable<Char>,
        metadata -> Nullable<Text>,
        implicit -> Bool,
        created_at -> Datetime,
        updated_at -> Datetime,
    }
}

diesel::table! {
    billable_metrics (id) {
        id -> Varchar,
        project_id -> Varchar,
        code -> Varchar,
        name -> Varchar,
        aggregation -> Varchar,
        property -> Nullable<Varchar>,
        filters -> Nullable<Text>,
        group_by -> Nullable<Varchar>,
        created_at -> Datetime,
    }
}

diesel::table! {
    usage_events (seq) {
        seq -> Unsigned<Bigint>,
        id -> Varchar,
        project_id -> Varchar,
        idempotency_key -> Varchar,
        request_hash -> Binary,
        customer_external_id -> Varchar,
        metric -> Varchar,
        quantity -> Numeric,
        occurred_at -> Datetime,
        received_at -> Datetime,
        properties -> Nullable<Text>,
    }
}

diesel::joinable!(api_keys -> projects (project_id));
diesel::joinable!(customers -> projects (project_id));
diesel::joinable!(billable_metrics -> projects (project_id));
diesel::allow_tables_to_appear_in_same_query!(projects, api_keys, customers, billable_metrics, usage_events);
