-- Issue 11: every change of an evaluation counts. A prompt's announcements carry its changed
-- evaluations with their revision, so a replica applies them without reading the database, and
-- keeps, of what it read and what it heard, each evaluation at its highest revision (NATS may
-- deliver two replicas' announcements out of order). A trigger, so that no update (an
-- operator's by hand included) can change a row and leave its revision behind.
ALTER TABLE evaluations ADD COLUMN revision BIGINT NOT NULL DEFAULT 0;

CREATE FUNCTION evaluations_next_revision() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.revision := OLD.revision + 1;
    RETURN NEW;
END
$$;

CREATE TRIGGER evaluations_revision BEFORE UPDATE ON evaluations
    FOR EACH ROW EXECUTE FUNCTION evaluations_next_revision();
