import Crypto
import Foundation

/// The cluster secret (`--token-file`): proves at every handshake that coordinator and
/// worker belong to the same cluster, without sending the secret over the link.
///
/// HELLO carries a fresh nonce and HMAC-SHA256(secret, "jindou-hello" ‖ nonce ‖
/// fingerprint ‖ coordinator name); WELCOME answers with HMAC-SHA256(secret,
/// "jindou-welcome" ‖ nonce ‖ fingerprint ‖ worker name), so each side authenticates the
/// other. The admin API takes the secret itself as a bearer token (use TLS off-host).
public struct ClusterSecret: Sendable, Equatable {
    public let token: String
    /// Rebuilt per use from `token`: SymmetricKey is not Sendable.
    private var key: SymmetricKey { SymmetricKey(data: Data(token.utf8)) }

    public init(token: String) throws(SecretError) {
        let trimmed = token.trimmingCharacters(in: .whitespacesAndNewlines)
        guard trimmed.utf8.count >= 16 else { throw .tooShort(length: trimmed.utf8.count) }
        self.token = trimmed
    }

    /// Reads a token file (refusing group- or world-readable files would be stricter; we
    /// warn in the daemons instead, as ssh does for keys).
    public init(contentsOfFile path: String) throws(SecretError) {
        guard let data = FileManager.default.contents(atPath: path) else { throw .unreadable(path: path) }
        try self.init(token: String(decoding: data, as: UTF8.self))
    }

    /// A new random secret (for `jindouctl certs init` and tests).
    public static func generate() -> String {
        var generator = SystemRandomNumberGenerator()
        return (0..<32).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &generator)) }.joined()
    }

    public static func == (a: ClusterSecret, b: ClusterSecret) -> Bool { a.token == b.token }

    public static func nonce() -> Data {
        var generator = SystemRandomNumberGenerator()
        return Data((0..<16).map { _ in UInt8.random(in: 0...255, using: &generator) })
    }

    func tag(_ parts: [Data]) -> Data {
        var mac = HMAC<SHA256>(key: key)
        for part in parts {
            var length = UInt32(part.count).littleEndian
            withUnsafeBytes(of: &length) { mac.update(data: Data($0)) }
            mac.update(data: part)
        }
        return Data(mac.finalize())
    }

    public func helloTag(nonce: Data, fingerprint: String, coordinatorName: String) -> Data {
        tag([Data("jindou-hello".utf8), nonce, Data(fingerprint.utf8), Data(coordinatorName.utf8)])
    }

    public func welcomeTag(nonce: Data, fingerprint: String, workerName: String) -> Data {
        tag([Data("jindou-welcome".utf8), nonce, Data(fingerprint.utf8), Data(workerName.utf8)])
    }

    /// Constant-time comparison.
    public static func matches(_ a: Data, _ b: Data) -> Bool {
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for (x, y) in zip(a, b) { difference |= x ^ y }
        return difference == 0
    }

    /// Checks an HTTP `Authorization: Bearer …` header value.
    public func acceptsBearer(_ header: String?) -> Bool {
        guard let header, header.hasPrefix("Bearer ") else { return false }
        return Self.matches(Data(header.dropFirst(7).utf8), Data(token.utf8))
    }
}

public enum SecretError: Error, Equatable, CustomStringConvertible {
    case unreadable(path: String)
    case tooShort(length: Int)

    public var description: String {
        switch self {
        case .unreadable(let path): "cannot read the cluster secret file \(path)"
        case .tooShort(let length): "the cluster secret is \(length) characters; use at least 16 (e.g. 64 hex digits)"
        }
    }
}
