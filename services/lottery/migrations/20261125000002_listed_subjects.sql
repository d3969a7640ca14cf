-- Subjects on the abnormal-operation or serious-dishonesty list may be drawn at a ratio of their
-- own (100% in some provinces, DOMAIN.md "Random inspections"). Lottery learns the listings from
-- sanctions' ListingChanged events: a subject may stand on a list by several records at once, so
-- each (subject, list) counts its standing listings.
CREATE TABLE listed_subjects (
    credit_code TEXT     COLLATE "C" NOT NULL,
    -- common.v1.ListKind.
    list        SMALLINT NOT NULL,
    standing    INTEGER  NOT NULL,
    PRIMARY KEY (credit_code, list)
);

-- Percent of the listed subjects a plan draws, whatever their grade; NULL: they follow their grade.
ALTER TABLE plans ADD COLUMN listed_percent DOUBLE PRECISION;

-- The listed subjects of a draw's population, so that VerifyDraw reruns it as it was.
ALTER TABLE draws ADD COLUMN listed TEXT[] NOT NULL DEFAULT '{}';
