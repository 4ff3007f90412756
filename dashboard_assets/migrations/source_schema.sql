-- The operational source tables, exactly as the source schema contract names
-- them. The pipeline only reads these; the project creates them for the demo,
-- the tests and the benchmarks (`dashboard-assets migrate --with-source-schema`).

CREATE TABLE IF NOT EXISTS organizations (
    id          uuid PRIMARY KEY,
    name        text NOT NULL,
    timezone    text DEFAULT 'Australia/Sydney',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS customers (
    id               uuid PRIMARY KEY,
    organization_id  uuid NOT NULL REFERENCES organizations (id),
    name             text NOT NULL,
    status           text NOT NULL,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    last_order_date  date
);

CREATE TABLE IF NOT EXISTS products (
    id               uuid PRIMARY KEY,
    organization_id  uuid NOT NULL REFERENCES organizations (id),
    sku              text NOT NULL,
    name             text NOT NULL,
    category         text NOT NULL,
    specifications   jsonb NOT NULL DEFAULT '{}'::jsonb,
    unit_price       numeric(14, 2) NOT NULL
);

CREATE TABLE IF NOT EXISTS orders (
    id               uuid PRIMARY KEY,
    organization_id  uuid NOT NULL REFERENCES organizations (id),
    customer_id      uuid NOT NULL,
    status           text NOT NULL,
    total_amount     numeric(14, 2),
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    delivered_at     timestamptz
);

CREATE TABLE IF NOT EXISTS order_items (
    id               uuid PRIMARY KEY,
    organization_id  uuid NOT NULL,
    order_id         uuid NOT NULL,
    product_id       uuid NOT NULL,
    quantity         integer NOT NULL,
    unit_price       numeric(14, 2),
    line_total       numeric(14, 2)
);

CREATE TABLE IF NOT EXISTS opportunities (
    id                   uuid PRIMARY KEY,
    organization_id      uuid NOT NULL,
    customer_id          uuid NOT NULL,
    stage                text NOT NULL,
    value                numeric(14, 2),
    probability          integer,
    expected_close_date  date,
    actual_close_date    date,
    created_at           timestamptz NOT NULL,
    updated_at           timestamptz NOT NULL
);

CREATE TABLE IF NOT EXISTS jobs (
    id               uuid PRIMARY KEY,
    organization_id  uuid NOT NULL,
    order_id         uuid,
    customer_id      uuid NOT NULL,
    status           text NOT NULL,
    scheduled_date   date,
    completed_at     timestamptz,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL
);

CREATE TABLE IF NOT EXISTS job_time_entries (
    id               uuid PRIMARY KEY,
    organization_id  uuid NOT NULL,
    job_id           uuid NOT NULL,
    hours            numeric(6, 2),
    entry_date       date NOT NULL,
    created_at       timestamptz NOT NULL
);

CREATE TABLE IF NOT EXISTS warranty_claims (
    id               uuid PRIMARY KEY,
    organization_id  uuid NOT NULL,
    customer_id      uuid NOT NULL,
    order_id         uuid,
    status           text NOT NULL,
    claim_type       text NOT NULL,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    resolved_at      timestamptz
);

CREATE TABLE IF NOT EXISTS targets (
    id               uuid PRIMARY KEY,
    organization_id  uuid NOT NULL,
    metric           text NOT NULL,
    period_start     date NOT NULL,
    period_end       date NOT NULL,
    target_value     numeric(14, 2) NOT NULL
);

CREATE TABLE IF NOT EXISTS marketing_spend (
    id               uuid PRIMARY KEY,
    organization_id  uuid NOT NULL,
    spend_date       date NOT NULL,
    channel          text NOT NULL,
    amount           numeric(14, 2) NOT NULL
);
