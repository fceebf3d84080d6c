/// What `jindoud --version` and `jindouctl --version` print. Nodes of one cluster must speak the
/// same `WireProtocol.version` (checked at every handshake); the release number is for people.
public enum JindouRelease {
    public static let version = "0.1.0"

    /// e.g. "jindou 0.1.0 (wire protocol 1)".
    public static var description: String { "jindou \(version) (wire protocol \(WireProtocol.version))" }
}
