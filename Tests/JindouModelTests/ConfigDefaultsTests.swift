import Foundation
import JindouModel
import JindouTestSupport
import Testing

/// What a config.json that leaves keys out means: each family's transformers configuration
/// class with no arguments, written out by `to_dict()` (configs/defaults.json, from
/// tools/make_fixtures.py), must describe the same model as a config.json holding only its
/// `model_type`. The fixtures write every key, so without this a wrong default in a family
/// file would pass every other test.
@Suite("Family defaults equal transformers' configuration classes")
struct ConfigDefaultsTests {
    static var defaults: [String: [String: Any]] {
        let url = URL(fileURLWithPath: Fixtures.path("configs") + "/defaults.json")
        let file = (try? JSONSerialization.jsonObject(with: Data(contentsOf: url))) as? [String: Any]
        return (file?["configs"] as? [String: [String: Any]]) ?? [:]
    }

    static let modelTypes: [String] = defaults.keys.sorted()

    @Test func everyFamilyIsListed() {
        #expect(Self.modelTypes.count >= 14)
    }

    @Test("a config.json of only model_type describes transformers' defaults", arguments: modelTypes)
    func absentKeysMeanTransformersDefaults(modelType: String) throws {
        var full = try #require(Self.defaults[modelType])
        full["architectures"] = nil  // null there: the family comes from model_type, as in the minimal file
        let minimalConfig: [String: Any] = ["model_type": modelType]
        // Some classes' defaults describe no model (Dots1Config: n_routed_experts None;
        // Glm4MoeConfig: head_dim 4096 / 96 with half of it rotating): then both are refused alike.
        if let refused = ConfigEditing.refusedField(full), !refused.contains(" ") {
            #expect(ConfigEditing.refusedField(minimalConfig) == refused, "\(modelType)")
            return
        }
        let expected = try ConfigEditing.describe(full)
        let minimal = try ConfigEditing.describe(minimalConfig)
        #expect(minimal == expected)
        #expect(Self.differences(minimal, expected) == "", "\(modelType)")
    }

    /// The top-level fields that differ, for the failure message.
    static func differences(_ a: ModelDescription, _ b: ModelDescription) -> String {
        let left = Mirror(reflecting: a).children, right = Mirror(reflecting: b).children
        return zip(left, right).compactMap { l, r in
            String(describing: l.value) == String(describing: r.value) ? nil
                : "\(l.label ?? "?"): \(String(describing: l.value).prefix(300)) vs \(String(describing: r.value).prefix(300))"
        }.joined(separator: "; ")
    }
}
