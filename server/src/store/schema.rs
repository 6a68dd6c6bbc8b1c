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

diesel::table! {
    wallets (id) {
        id -> Varchar,
        project_id -> Varchar,
        customer_id -> Varchar,
        customer_external_id -> Varchar,
        currency -> Varchar,
        rate_to_money -> Nullable<Numeric>,
        money_currency -> Nullable<Char>,
        policy -> Varchar,
        credit_limit -> Numeric,
        low_balance_threshold -> Nullable<Numeric>,
        below_threshold -> Bool,
        balance -> Numeric,
        held -> Numeric,
        event_seq -> Unsigned<Bigint>,
        overdraft_account_id -> Varchar,
        created_at -> Datetime,
        updated_at -> Datetime,
    }
}

diesel::table! {
    ledger_accounts (id) {
        id -> Varchar,
        project_id -> Varchar,
        currency -> Varchar,
        kind -> Varchar,
        code -> Varchar,
        wallet_id -> Nullable<Varchar>,
        created_at -> Datetime,
    }
}

diesel::table! {
    ledger_transactions (id) {
        id -> Varchar,
        project_id -> Varchar,
        wallet_id -> Nullable<Varchar>,
        cause -> Varchar,
        cause_id -> Nullable<Varchar>,
        currency -> Varchar,
        amount -> Numeric,
        idempotency_key -> Nullable<Varchar>,
        request_hash -> Nullable<Binary>,
        description -> Nullable<Varchar>,
        actor -> Varchar,
        corrects_transaction_id -> Nullable<Varchar>,
        wallet_balance_after -> Nullable<Numeric>,
        wallet_seq -> Nullable<Unsigned<Bigint>>,
        created_at -> Datetime,
    }
}

diesel::table! {
    ledger_postings (id) {
        id -> Unsigned<Bigint>,
        transaction_id -> Varchar,
        project_id -> Varchar,
        account_id -> Varchar,
        wallet_id -> Nullable<Varchar>,
        lot_id -> Nullable<Varchar>,
        currency -> Varchar,
        amount -> Numeric,
        wallet_balance_after -> Nullable<Numeric>,
        cause -> Varchar,
        created_at -> Datetime,
    }
}

diesel::table! {
    credit_lots (id) {
        id -> Varchar,
        project_id -> Varchar,
        wallet_id -> Varchar,
        account_id -> Varchar,
        source -> Varchar,
        original_amount -> Numeric,
        remaining -> Numeric,
        priority -> Integer,
        expires_at -> Nullable<Datetime>,
        expired_at -> Nullable<Datetime>,
        transaction_id -> Varchar,
        created_at -> Datetime,
    }
}

diesel::table! {
    ledger_outbox (id) {
        id -> Unsigned<Bigint>,
        project_id -> Varchar,
        wallet_id -> Varchar,
        customer_id -> Nullable<Varchar>,
        wallet_seq -> Nullable<Unsigned<Bigint>>,
        customer_seq -> Nullable<Unsigned<Bigint>>,
        kind -> Varchar,
        payload -> Text,
        created_at -> Datetime,
    }
}

diesel::table! {
    customer_event_seqs (customer_id) {
        customer_id -> Varchar,
        project_id -> Varchar,
        seq -> Unsigned<Bigint>,
    }
}

diesel::table! {
    credit_units (id) {
        id -> Varchar,
        project_id -> Varchar,
        code -> Varchar,
        name -> Varchar,
        decimals -> Unsigned<Tinyint>,
        rate_to_money -> Nullable<Decimal>,
        money_currency -> Nullable<Char>,
        created_at -> Datetime,
    }
}

diesel::table! {
    plans (id) {
        id -> Varchar,
        project_id -> Varchar,
        code -> Varchar,
        latest_version -> Unsigned<Integer>,
        created_at -> Datetime,
    }
}

diesel::table! {
    plan_versions (id) {
        id -> Varchar,
        plan_id -> Varchar,
        project_id -> Varchar,
        version -> Unsigned<Integer>,
        name -> Varchar,
        currency -> Varchar,
        interval_unit -> Varchar,
        interval_count -> Unsigned<Smallint>,
        fixed_fee -> Decimal,
        fixed_fee_timing -> Varchar,
        minimum_commitment -> Nullable<Decimal>,
        included_credits -> Nullable<Decimal>,
        included_credits_currency -> Nullable<Varchar>,
        usage_threshold -> Nullable<Decimal>,
        trial_days -> Unsigned<Smallint>,
        definition_hash -> Char,
        created_at -> Datetime,
    }
}

diesel::table! {
    plan_charges (id) {
        id -> Varchar,
        plan_version_id -> Varchar,
        project_id -> Varchar,
        position -> Unsigned<Smallint>,
        metric_id -> Varchar,
        charge -> Text,
    }
}

diesel::table! {
    subscriptions (id) {
        id -> Varchar,
        project_id -> Varchar,
        customer_id -> Varchar,
        plan_id -> Varchar,
        plan_version_id -> Varchar,
        billing_anchor -> Varchar,
        starts_at -> Datetime,
        trial_ends_at -> Nullable<Datetime>,
        ends_at -> Nullable<Datetime>,
        canceled_at -> Nullable<Datetime>,
        live -> Nullable<Tinyint>,
        idempotency_key -> Varchar,
        request_hash -> Binary,
        created_at -> Datetime,
    }
}

diesel::table! {
    subscription_changes (seq) {
        seq -> Unsigned<Bigint>,
        subscription_id -> Varchar,
        project_id -> Varchar,
        kind -> Varchar,
        plan_version_id -> Varchar,
        effective_at -> Datetime,
        actor -> Varchar,
        created_at -> Datetime,
    }
}

diesel::table! {
    invoices (id) {
        id -> Varchar,
        project_id -> Varchar,
        customer_id -> Varchar,
        subscription_id -> Varchar,
        plan_version_id -> Varchar,
        reason -> Varchar,
        boundary -> Datetime,
        usage_from -> Nullable<Datetime>,
        usage_to -> Nullable<Datetime>,
        status -> Varchar,
        number -> Nullable<Unsigned<Bigint>>,
        currency -> Varchar,
        subtotal -> Decimal,
        discount -> Decimal,
        tax -> Decimal,
        total -> Decimal,
        credits -> Decimal,
        amount_due -> Decimal,
        computed_at -> Datetime,
        cutoff -> Datetime,
        conventions_version -> Unsigned<Integer>,
        manifest -> Text,
        manifest_hash -> Char,
        invoice_transaction_id -> Nullable<Varchar>,
        credits_transaction_id -> Nullable<Varchar>,
        finalized_at -> Nullable<Datetime>,
        voided_at -> Nullable<Datetime>,
        void_reason -> Nullable<Varchar>,
        void_invoice_transaction_id -> Nullable<Varchar>,
        void_credits_transaction_id -> Nullable<Varchar>,
        created_at -> Datetime,
        updated_at -> Datetime,
    }
}

diesel::table! {
    invoice_lines (invoice_id, position) {
        invoice_id -> Varchar,
        position -> Unsigned<Smallint>,
        project_id -> Varchar,
        kind -> Varchar,
        charge_id -> Nullable<Varchar>,
        description -> Varchar,
        quantity -> Nullable<Decimal>,
        amount -> Decimal,
        exact -> Varchar,
        period_from -> Nullable<Datetime>,
        period_to -> Nullable<Datetime>,
        event_count -> Nullable<Unsigned<Bigint>>,
        events_hash -> Nullable<Char>,
        rating -> Nullable<Text>,
    }
}

diesel::table! {
    invoice_sequences (project_id) {
        project_id -> Varchar,
        last_number -> Unsigned<Bigint>,
    }
}

diesel::table! {
    leases (name) {
        name -> Varchar,
        holder -> Varchar,
        expires_at -> Datetime,
    }
}

diesel::table! {
    coupons (id) {
        id -> Varchar,
        project_id -> Varchar,
        code -> Varchar,
        name -> Varchar,
        kind -> Varchar,
        percentage -> Nullable<Decimal>,
        amount -> Nullable<Decimal>,
        currency -> Nullable<Varchar>,
        duration -> Varchar,
        periods -> Nullable<Unsigned<Integer>>,
        definition_hash -> Char,
        created_at -> Datetime,
    }
}

diesel::table! {
    coupon_redemptions (id) {
        id -> Varchar,
        project_id -> Varchar,
        subscription_id -> Varchar,
        coupon_id -> Varchar,
        applied_at -> Datetime,
        periods -> Nullable<Unsigned<Integer>>,
        actor -> Varchar,
        idempotency_key -> Varchar,
        request_hash -> Binary,
    }
}

diesel::table! {
    tax_rates (id) {
        id -> Varchar,
        project_id -> Varchar,
        code -> Varchar,
        name -> Varchar,
        percentage -> Decimal,
        default_position -> Nullable<Unsigned<Smallint>>,
        created_at -> Datetime,
    }
}

diesel::table! {
    customer_tax_rates (customer_id, position) {
        customer_id -> Varchar,
        position -> Unsigned<Smallint>,
        project_id -> Varchar,
        tax_rate_id -> Varchar,
    }
}

diesel::table! {
    invoice_adjustments (id) {
        id -> Varchar,
        project_id -> Varchar,
        invoice_id -> Varchar,
        number -> Unsigned<Bigint>,
        kind -> Varchar,
        currency -> Varchar,
        subtotal -> Decimal,
        discount -> Decimal,
        tax -> Decimal,
        total -> Decimal,
        cutoff -> Datetime,
        manifest -> Text,
        manifest_hash -> Char,
        transaction_id -> Nullable<Varchar>,
        created_at -> Datetime,
    }
}

diesel::table! {
    credit_holds (id) {
        id -> Varchar,
        project_id -> Varchar,
        wallet_id -> Varchar,
        account_id -> Varchar,
        currency -> Varchar,
        amount -> Numeric,
        remaining -> Numeric,
        settled_amount -> Nullable<Numeric>,
        status -> Varchar,
        draws -> Text,
        metadata -> Nullable<Text>,
        expires_at -> Datetime,
        transaction_id -> Varchar,
        closing_transaction_id -> Nullable<Varchar>,
        created_at -> Datetime,
        closed_at -> Nullable<Datetime>,
    }
}

diesel::table! {
    payment_settings (project_id) {
        project_id -> Varchar,
        top_up_minimum -> Decimal,
        top_up_maximum -> Decimal,
        top_up_presets -> Text,
        updated_at -> Datetime,
    }
}

diesel::table! {
    payment_secrets (name) {
        name -> Varchar,
        secret -> Varchar,
        created_at -> Datetime,
    }
}

diesel::table! {
    checkout_sessions (id) {
        id -> Varchar,
        project_id -> Varchar,
        customer_id -> Varchar,
        purpose -> Varchar,
        wallet_id -> Nullable<Varchar>,
        invoice_id -> Nullable<Varchar>,
        currency -> Varchar,
        amount -> Decimal,
        provider -> Varchar,
        provider_session_id -> Nullable<Varchar>,
        url -> Nullable<Varchar>,
        success_url -> Varchar,
        cancel_url -> Varchar,
        status -> Varchar,
        idempotency_key -> Varchar,
        request_hash -> Binary,
        actor -> Varchar,
        created_at -> Datetime,
        updated_at -> Datetime,
    }
}

diesel::table! {
    payments (id) {
        id -> Varchar,
        project_id -> Varchar,
        customer_id -> Varchar,
        checkout_session_id -> Varchar,
        purpose -> Varchar,
        wallet_id -> Nullable<Varchar>,
        invoice_id -> Nullable<Varchar>,
        currency -> Varchar,
        amount -> Decimal,
        status -> Varchar,
        provider -> Varchar,
        provider_payment_id -> Nullable<Varchar>,
        transaction_id -> Nullable<Varchar>,
        refund_transaction_id -> Nullable<Varchar>,
        failure_reason -> Nullable<Varchar>,
        created_at -> Datetime,
        updated_at -> Datetime,
    }
}

diesel::table! {
    webhook_events (seq) {
        seq -> Unsigned<Bigint>,
        provider -> Varchar,
        event_id -> Varchar,
        event_type -> Varchar,
        object_ref -> Nullable<Varchar>,
        checkout_session_id -> Nullable<Varchar>,
        project_id -> Nullable<Varchar>,
        signature_hash -> Binary,
        payload -> Text,
        outcome -> Varchar,
        received_at -> Datetime,
        processed_at -> Nullable<Datetime>,
    }
}

diesel::table! {
    stripe_customers (customer_id) {
        customer_id -> Varchar,
        project_id -> Varchar,
        stripe_customer_id -> Varchar,
        created_at -> Datetime,
    }
}

diesel::table! {
    portal_sessions (id) {
        id -> Varchar,
        project_id -> Varchar,
        customer_id -> Varchar,
        link_hash -> Binary,
        credential_hash -> Nullable<Binary>,
        return_url -> Nullable<Varchar>,
        idempotency_key -> Nullable<Varchar>,
        request_hash -> Nullable<Binary>,
        actor -> Varchar,
        created_at -> Datetime,
        expires_at -> Datetime,
        exchanged_at -> Nullable<Datetime>,
        revoked_at -> Nullable<Datetime>,
    }
}

diesel::table! {
    portal_settings (project_id) {
        project_id -> Varchar,
        logo_url -> Nullable<Varchar>,
        updated_at -> Datetime,
    }
}

diesel::joinable!(api_keys -> projects (project_id));
diesel::joinable!(customers -> projects (project_id));
diesel::joinable!(billable_metrics -> projects (project_id));
diesel::joinable!(credit_units -> projects (project_id));
diesel::joinable!(plans -> projects (project_id));
diesel::joinable!(plan_versions -> plans (plan_id));
diesel::joinable!(plan_charges -> plan_versions (plan_version_id));
diesel::joinable!(ledger_postings -> ledger_transactions (transaction_id));
diesel::joinable!(ledger_postings -> ledger_accounts (account_id));
diesel::joinable!(credit_lots -> wallets (wallet_id));
diesel::joinable!(credit_holds -> wallets (wallet_id));
diesel::joinable!(invoice_lines -> invoices (invoice_id));
diesel::joinable!(coupon_redemptions -> coupons (coupon_id));
diesel::joinable!(customer_tax_rates -> tax_rates (tax_rate_id));
diesel::allow_tables_to_appear_in_same_query!(
    projects,
    api_keys,
    customers,
    billable_metrics,
    usage_events,
    wallets,
    ledger_accounts,
    ledger_transactions,
    ledger_postings,
    customer_event_seqs,
    credit_lots,
    ledger_outbox,
    credit_units,
    plans,
    plan_versions,
    plan_charges,
    subscriptions,
    subscription_changes,
    invoices,
    invoice_lines,
    invoice_sequences,
    leases,
    coupons,
    coupon_redemptions,
    tax_rates,
    customer_tax_rates,
    invoice_adjustments,
    credit_holds,
    payment_settings,
    payment_secrets,
    checkout_sessions,
    payments,
    webhook_events,
    stripe_customers,
    portal_sessions,
    portal_settings,
);
