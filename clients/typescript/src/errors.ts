// Reads the google.rpc.ErrorInfo that seat-inventory attaches to every error
// (AIP-193: domain "seatinventory", an UPPER_SNAKE reason, metadata such as
// seat_ids). Connect hands it over undecoded, because google/rpc protos are
// not part of this package; ErrorInfo is three fields, read here by hand.
import { BinaryReader } from "@bufbuild/protobuf/wire";
import { ConnectError } from "@connectrpc/connect";

export interface ErrorInfo {
  reason: string;
  domain: string;
  metadata: Record<string, string>;
}

const ERROR_INFO = "google.rpc.ErrorInfo";

function decodeErrorInfo(bytes: Uint8Array): ErrorInfo {
  const info: ErrorInfo = { reason: "", domain: "", metadata: {} };
  const reader = new BinaryReader(bytes);
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field === 1) info.reason = reader.string();
    else if (field === 2) info.domain = reader.string();
    else if (field === 3) {
      const entry = new BinaryReader(reader.bytes());
      let key = "";
      let value = "";
      while (entry.pos < entry.len) {
        const [entryField, entryType] = entry.tag();
        if (entryField === 1) key = entry.string();
        else if (entryField === 2) value = entry.string();
        else entry.skip(entryType);
      }
      info.metadata[key] = value;
    } else reader.skip(wireType);
  }
  return info;
}

/** The ErrorInfo of a failed call, or undefined when it carries none. */
export function errorInfo(error: unknown): ErrorInfo | undefined {
  const err = ConnectError.from(error);
  for (const detail of err.details) {
    if ("type" in detail && detail.type === ERROR_INFO) {
      return decodeErrorInfo(detail.value);
    }
  }
  return undefined;
}
