-- Issue 8: roles of the platform layer (design §2.3 "Roles"). Provider users are tied to their
-- provider, and a provider worker to a worker of that same provider.
ALTER TABLE users DROP CONSTRAINT users_role_check;
ALTER TABLE users ADD CONSTRAINT users_role_check CHECK (role IN (
    'operator', 'supervisor', 'facility_staff', 'admin',
    'civil_affairs', 'assessor', 'provider_admin', 'provider_worker'));
ALTER TABLE users
    ADD COLUMN provider_id bigint REFERENCES providers(id),
    ADD COLUMN worker_id bigint,
    ADD CONSTRAINT users_worker_of_provider
        FOREIGN KEY (provider_id, worker_id) REFERENCES workers (provider_id, id),
    ADD CONSTRAINT users_provider_roles
        CHECK ((role IN ('provider_admin', 'provider_worker')) = (provider_id IS NOT NULL)),
    ADD CONSTRAINT users_worker_role
        CHECK ((role = 'provider_worker') = (worker_id IS NOT NULL));
CREATE UNIQUE INDEX users_one_per_worker ON users (worker_id) WHERE worker_id IS NOT NULL;
