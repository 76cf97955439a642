-- The pages of a document whose text came from OCR, each with Tesseract's mean word
-- confidence (0-100): [{"page": 3, "confidence": 91.2}, ...]; NULL when none did.
ALTER TABLE documents ADD COLUMN ocr_pages JSONB;
