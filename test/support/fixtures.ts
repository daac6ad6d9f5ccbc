/**
 * The event fixtures of §6 of /work/shared/reference/ai-flow-protocol.md, copied verbatim
 * (one JSON document per entry, parsed in the test so the text stays byte-for-byte the same).
 */
export const REFERENCE_EVENT_FIXTURES: readonly string[] = [
  `{"type":"session_start","session":{"id":"6f1c2a9e-3b4d-4e8f-9a10-2b3c4d5e6f70","account_id":"1234567","phone_number":"4921112345678","direction":"inbound","from_phone_number":"4915112345678","to_phone_number":"4921112345678"}}`,
  `{"type":"session_start","session":{"id":"6f1c2a9e-3b4d-4e8f-9a10-2b3c4d5e6f71","account_id":"account-123","phone_number":"+491234567890","from_phone_number":"+499876543210","to_phone_number":"+491234567890"}}`,
  `{"type":"session_start","session":{"id":"6f1c2a9e-3b4d-4e8f-9a10-2b3c4d5e6f72","account_id":"1234567","phone_number":"4915790000687","direction":"outbound","from_phone_number":"4921155660","to_phone_number":"4915790000687"}}`,
  `{"type":"user_speak","text":"Ja, schicken Sie mir bitte eine SMS.","barged_in":false,"session":{"id":"6f1c2a9e-3b4d-4e8f-9a10-2b3c4d5e6f70","account_id":"1234567","phone_number":"4921112345678","direction":"inbound","from_phone_number":"4915112345678","to_phone_number":"4921112345678"}}`,
  `{"type":"user_speak","text":"Moment, stopp","barged_in":true,"session":{"id":"6f1c2a9e-3b4d-4e8f-9a10-2b3c4d5e6f70","account_id":"1234567","phone_number":"4921112345678"}}`,
  `{"type":"user_speak","transcript":"hello","session":{"id":"legacy-1","account_id":"account-123","phone_number":"+491234567890"}}`,
  `{"type":"dtmf_received","digit":"#","session":{"id":"6f1c2a9e-3b4d-4e8f-9a10-2b3c4d5e6f70","account_id":"1234567","phone_number":"4921112345678","direction":"inbound","from_phone_number":"4915112345678","to_phone_number":"4921112345678"}}`,
  `{"type":"assistant_speak","text":"Darf ich Ihnen die Bestätigung per SMS senden?","duration_ms":2300,"speech_started_at":1764000000123,"session":{"id":"6f1c2a9e-3b4d-4e8f-9a10-2b3c4d5e6f70","account_id":"1234567","phone_number":"4921112345678"}}`,
  `{"type":"assistant_speech_ended","session":{"id":"6f1c2a9e-3b4d-4e8f-9a10-2b3c4d5e6f70","account_id":"1234567","phone_number":"4921112345678"}}`,
  `{"type":"user_input_timeout","session":{"id":"6f1c2a9e-3b4d-4e8f-9a10-2b3c4d5e6f70","account_id":"1234567","phone_number":"4921112345678","direction":"inbound","from_phone_number":"4915112345678","to_phone_number":"4921112345678"}}`,
  `{"type":"user_speech_started","session":{"id":"6f1c2a9e-3b4d-4e8f-9a10-2b3c4d5e6f70","account_id":"1234567","phone_number":"4921112345678"}}`,
  `{"type":"sms_failed","recipient":"4915112345678","reason":"insufficient_balance","message":"Account balance too low to send SMS","session":{"id":"6f1c2a9e-3b4d-4e8f-9a10-2b3c4d5e6f70","account_id":"1234567","phone_number":"4921112345678","direction":"inbound","from_phone_number":"4915112345678","to_phone_number":"4921112345678"}}`,
  `{"type":"session_end","session":{"id":"6f1c2a9e-3b4d-4e8f-9a10-2b3c4d5e6f70","account_id":"1234567","phone_number":"4921112345678"}}`,
  `{"type":"some_future_event","session":{"id":"6f1c2a9e-3b4d-4e8f-9a10-2b3c4d5e6f70","account_id":"1234567","phone_number":"4921112345678"}}`,
];
