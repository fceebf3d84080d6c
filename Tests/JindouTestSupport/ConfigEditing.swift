import Foundation
import JindouModel

/// A fixture's config.json as a dictionary to edit, and what `ModelDescription` makes of an
/// edited one: the family configuration tests' shared steps.
public enum ConfigEditing {
    public static func config(_ fixture: String) throws -> [String: Any] {
        let data = try Data(contentsOf: URL(fileURLWithPath: Fixtures.path(fixture) + "/config.json"))
        return try JSONSerialization.jsonObject(with: data) as! [String: Any]
    }

    public static func describe(_ config: [String: Any]) throws -> ModelDescription {
        try ModelDescription(configJSON: try JSONSerialization.data(withJSONObject: config), path: "c")
    }

    /// The field a config is refused for; nil when it is accepted (any other error, described).
    public static func refusedField(_ config: [String: Any]) -> String? {
        do {
            _ = try describe(config)
            return nil
        } catch let CheckpointError.badConfig(_, field, _) {
            return field
        } catch {
            return "\(error)"
        }
    }
}
