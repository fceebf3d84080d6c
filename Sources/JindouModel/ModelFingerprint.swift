import Crypto
import Foundation

/// Identity of a checkpoint: SHA-256 over config.json's bytes and every tensor's name,
/// dtype and shape (not the weights: hashing hundreds of GB at every start is too slow,
/// and a different checkpoint of the same shapes has a different config or file layout
/// in practice). Coordinator and workers refuse to talk unless their fingerprints agree.
public enum ModelFingerprint {
    public static func compute(_ checkpoint: Checkpoint) throws -> String {
        var hasher = SHA256()
        hasher.update(data: checkpoint.configData)
        let headers = try checkpoint.headers(for: checkpoint.tensorNames)
        var entries: [SafetensorsEntry] = []
        for header in headers.values { entries += header.entries.values }
        for entry in entries.sorted(by: { $0.name < $1.name }) {
            hasher.update(data: Data("\n\(entry.name) \(entry.dtype.rawValue) \(entry.shape)".utf8))
        }
        return hasher.finalize().map { String(format: "%02x", $0) }.joined()
    }
}
