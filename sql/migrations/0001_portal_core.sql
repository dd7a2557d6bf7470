-- The minimal core of the existing RTS portal schema, created ONLY where absent.
--
-- Against the production portal database every statement here is a no-op (the tables exist,
-- with many more columns); against a fresh database it creates just enough for the agent tables'
-- foreign keys and for auto-created tickets. Columns mirror the plan's "Existing Schema Overview".

CREATE TABLE IF NOT EXISTS hourly_rate_categories (
    id            UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    category_name VARCHAR(255) NOT NULL,
    created_at    TIMESTAMPTZ DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE IF NOT EXISTS location_types (
    id         UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    type_name  VARCHAR(100) NOT NULL,
    created_at TIMESTAMPTZ DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE IF NOT EXISTS businesses (
    id               UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    business_name    VARCHAR(255) NOT NULL,
    is_active        BOOLEAN DEFAULT true,
    soft_delete      BOOLEAN DEFAULT false,
    rate_category_id UUID REFERENCES hourly_rate_categories(id),
    is_individual    BOOLEAN DEFAULT false,
    created_at       TIMESTAMPTZ DEFAULT CURRENT_TIMESTAMP,
    updated_at       TIMESTAMPTZ DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE IF NOT EXISTS service_locations (
    id               UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    business_id      UUID NOT NULL REFERENCES businesses(id) ON DELETE CASCADE,
    location_name    VARCHAR(255) NOT NULL,
    address_label    VARCHAR(255),
    street_address_1 VARCHAR(255),
    street_address_2 VARCHAR(255),
    city             VARCHAR(100),
    state            VARCHAR(100),
    zip_code         VARCHAR(20),
    contact_person   VARCHAR(255),
    contact_phone    VARCHAR(50),
    contact_email    VARCHAR(255),
    is_headquarters  BOOLEAN DEFAULT false,
    is_active        BOOLEAN DEFAULT true,
    soft_delete      BOOLEAN DEFAULT false,
    location_type    UUID REFERENCES location_types(id),
    created_at       TIMESTAMPTZ DEFAULT CURRENT_TIMESTAMP,
    updated_at       TIMESTAMPTZ DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE IF NOT EXISTS users (
    id                 UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    business_id        UUID REFERENCES businesses(id) ON DELETE CASCADE,
    email              VARCHAR(255) NOT NULL,
    username           VARCHAR(255),
    role               VARCHAR(50) NOT NULL DEFAULT 'customer',
    is_primary_contact BOOLEAN DEFAULT false,
    password_hash      VARCHAR(255),
    mfa_enabled        BOOLEAN DEFAULT false,
    is_active          BOOLEAN DEFAULT true,
    soft_delete        BOOLEAN DEFAULT false,
    created_at         TIMESTAMPTZ DEFAULT CURRENT_TIMESTAMP,
    updated_at         TIMESTAMPTZ DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE IF NOT EXISTS priority_levels (
    id         UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    level_name VARCHAR(50) NOT NULL,
    sort_order INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE IF NOT EXISTS urgency_levels (
    id         UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    level_name VARCHAR(50) NOT NULL,
    sort_order INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE IF NOT EXISTS service_request_statuses (
    id          UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    status_name VARCHAR(50) NOT NULL,
    is_final    BOOLEAN NOT NULL DEFAULT false
);

CREATE TABLE IF NOT EXISTS service_types (
    id         UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    type_name  VARCHAR(255) NOT NULL
);

CREATE TABLE IF NOT EXISTS service_requests (
    id                  UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    business_id         UUID NOT NULL REFERENCES businesses(id) ON DELETE CASCADE,
    service_location_id UUID REFERENCES service_locations(id) ON DELETE SET NULL,
    service_type_id     UUID REFERENCES service_types(id),
    title               VARCHAR(500) NOT NULL,
    description         TEXT,
    priority_level_id   UUID REFERENCES priority_levels(id),
    urgency_level_id    UUID REFERENCES urgency_levels(id),
    status_id           UUID REFERENCES service_request_statuses(id),
    source              VARCHAR(100),
    created_by          UUID REFERENCES users(id),
    soft_delete         BOOLEAN DEFAULT false,
    created_at          TIMESTAMPTZ DEFAULT CURRENT_TIMESTAMP,
    updated_at          TIMESTAMPTZ DEFAULT CURRENT_TIMESTAMP
);
