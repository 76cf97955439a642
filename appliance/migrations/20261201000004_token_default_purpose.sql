-- A token may carry a default purpose of use, applied (and recorded as such) when a request
-- made with it names none; without one, a request that needs a purpose must name it.
ALTER TABLE api_tokens ADD COLUMN default_purpose TEXT;
