-- A PostgreSQL role per Colony service, owning that service's schema and nothing else:
-- database-per-service enforced by the database, not only by convention. A service's role
-- can read and write its own tables and cannot even look inside another service's schema.
--
-- Run it once, as a superuser or the database's owner, in Colony's database. compose.yaml and
-- the dev overlay's PostgreSQL (deploy/kubernetes/dependencies/postgres.yaml carries this text
-- verbatim) run it from /docker-entrypoint-initdb.d when their data volume is new; on an
-- existing volume, run it by hand (psql -f) or start from an empty volume.
--
-- The role of service S is <database>_S (colony_orders in the database colony), made with the
-- DEVELOPMENT password <database>_S. In production, set real passwords (ALTER ROLE ... PASSWORD)
-- and put them in the colony-database Secret. Running it again changes nothing.
DO $roles$
DECLARE
    service text;
    service_role text;
BEGIN
    -- Nothing for anyone by default: no CONNECT or TEMPORARY on the database (so no role may
    -- create a schema of its own either: CREATE on it is the owner's alone), no use of the
    -- public schema. Each service's role gets CONNECT and its schema, and that is all.
    EXECUTE format('REVOKE ALL ON DATABASE %I FROM PUBLIC', current_database());
    REVOKE CREATE, USAGE ON SCHEMA public FROM PUBLIC;
    FOREACH service IN ARRAY ARRAY[
        'identity', 'catalog', 'inventory', 'cart', 'payments', 'delivery', 'orders',
        'notifications', 'recommendations'
    ] LOOP
        service_role := current_database() || '_' || service;
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = service_role) THEN
            EXECUTE format('CREATE ROLE %I LOGIN PASSWORD %L', service_role, service_role);
        END IF;
        EXECUTE format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), service_role);
        -- The service finds its schema there at start and creates its tables in it, as their
        -- owner; it never needs (nor has) the right to create a schema.
        EXECUTE format('CREATE SCHEMA IF NOT EXISTS %I AUTHORIZATION %I', service, service_role);
        EXECUTE format('ALTER SCHEMA %I OWNER TO %I', service, service_role);
        EXECUTE format('REVOKE ALL ON SCHEMA %I FROM PUBLIC', service);
    END LOOP;
END
$roles$;
