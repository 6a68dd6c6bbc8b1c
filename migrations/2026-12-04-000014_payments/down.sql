DROP TABLE stripe_customers;
DROP TABLE webhook_events;
DROP TABLE payments;
DROP TABLE checkout_sessions;
DROP TABLE payment_secrets;
DROP TABLE payment_settings;
