import Foundation
import Hummingbird
import JindouAdmin
import JindouCoordinator
import JindouModel
import JindouServer
import JindouServing
import JindouTestSupport
import Prometheus
import Testing

/// /openapi.json describes exactly the routes the coordinator's router registers (with a
/// controller and metrics, i.e. every route), each with its method. Its validity as an
/// OpenAPI 3.1 document is checked by openapi-spec-validator against a served copy
/// (`OpenAIServingTests.theServedOpenAPIDocumentIsValid`).
@Suite("OpenAPI document")
struct OpenAPITests {
    @Test func theDocumentListsExactlyTheRegisteredRoutes() async throws {
        let fixture = "qwen3-moe-tiny"
        let worker = try WorkerProcess(fixture: fixture, name: "api")
        defer { worker.stop() }
        let coordinator = try await Coordinator.start(
            .init(modelDirectory: Fixtures.path(fixture), workers: [worker.endpoint], prefault: false), logger: testLogger)
        defer { Task { await coordinator.pool.closeAll() } }
        let engine = coordinator.engine
        let serving = ServingContext(engine: engine, scheduler: BatchScheduler(engine: engine),
                                     text: try ServingText(directory: Fixtures.path(fixture), description: engine.description),
                                     modelName: fixture, maximumModelLength: 256)
        let router = CoordinatorAPI.router(serving: serving, controller: coordinator.controller, secret: nil,
                                           metrics: PrometheusCollectorRegistry(),
                                           modelFiles: try ModelFileServer(source: try openWeightSource(Fixtures.path(fixture))))
        let registered = Set(router.routes.map { route in
            // Hummingbird's `:name` parameters are OpenAPI's `{name}`.
            let path = "\(route.path)".split(separator: "/", omittingEmptySubsequences: false)
                .map { $0.hasPrefix(":") ? "{\($0.dropFirst())}" : String($0) }.joined(separator: "/")
            return "\(route.method.rawValue.uppercased()) \(path.hasPrefix("/") ? path : "/" + path)"
        })

        let document = try #require(try JSONSerialization.jsonObject(with: Data(OpenAPIDocument.json.utf8)) as? [String: Any])
        #expect(document["openapi"] as? String == "3.1.0")
        let paths = try #require(document["paths"] as? [String: [String: Any]])
        let documented = Set(paths.flatMap { path, operations in operations.keys.map { "\($0.uppercased()) \(path)" } })
        #expect(registered.count > 15)
        #expect(registered.subtracting(documented).isEmpty, "registered, not documented: \(registered.subtracting(documented).sorted())")
        #expect(documented.subtracting(registered).isEmpty, "documented, not registered: \(documented.subtracting(registered).sorted())")
        // Every operation names its answers and has a unique id.
        let operations = paths.values.flatMap { $0.values.compactMap { $0 as? [String: Any] } }
        #expect(operations.allSatisfy { ($0["responses"] as? [String: Any])?.isEmpty == false })
        let ids = operations.compactMap { $0["operationId"] as? String }
        #expect(ids.count == operations.count && Set(ids).count == ids.count)
    }

    /// A method the document does not define on a path it does gets 405 with the allowed
    /// methods (schemathesis's unsupported_method check); handlers' own 404s stay 404.
    @Test func undefinedMethodsGet405NamingTheAllowedOnes() async throws {
        let cluster = try LocalCluster(fixture: "qwen3-moe-tiny", workers: 1)
        defer { cluster.stop() }
        let client = try AdminClient(cluster.url, timeoutSeconds: 30)
        func status(_ method: String, _ path: String, _ body: String? = nil) async throws -> (Int, String) {
            do {
                _ = try await client.send(method, path, body: body.map { Data($0.utf8) })
                return (200, "")
            } catch AdminClientError.status(let code, let message) {
                return (code, message)
            }
        }
        for (method, path, allowed) in [("DELETE", "v1/chat/completions", "POST"), ("PUT", "health", "GET"),
                                        ("TRACE", "v1/node/files/model.safetensors", "GET"), ("GET", "v1/admin/drain", "POST")] {
            let (code, message) = try await status(method, path)
            #expect(code == 405 && message.contains("use \(allowed)"), "\(method) \(path): \(code) \(message)")
        }
        #expect(try await status("GET", "v1/nothing-here").0 == 404)
        let (code, message) = try await status("POST", "v1/admin/drain", #"{"worker": "nobody"}"#)
        #expect(code == 404 && message.contains("nobody"), "\(code) \(message)")
    }

    /// A value no schema check stops must not stop the server: `extra_slots: 1e300` once
    /// crashed the coordinator converting slots to Int (found by schemathesis).
    @Test func hostileAdminValuesGetAnErrorNotACrash() async throws {
        let cluster = try LocalCluster(fixture: "qwen3-moe-tiny", workers: 1)
        defer { cluster.stop() }
        let client = try AdminClient(cluster.url, timeoutSeconds: 30)
        _ = try await client.send("POST", "v1/completions", body: Data(#"{"model": "qwen3-moe-tiny", "prompt": [1, 2, 3], "max_tokens": 2}"#.utf8))
        for body in [#"{"dry_run": true, "extra_slots": 1e300}"#, #"{"dry_run": true, "extra_slots": 65}"#, #"{"dry_run": true, "extra_slots": -1}"#] {
            do {
                _ = try await client.send("POST", "v1/admin/rebalance", body: Data(body.utf8))
                Issue.record("\(body) was accepted")
            } catch AdminClientError.status(let code, let message) {
                #expect(code == 400 && message.contains("extra_slots"), "\(body): \(code) \(message)")
            }
        }
        _ = try await client.send("GET", "health", body: nil)
        _ = try await client.send("POST", "v1/admin/rebalance", body: Data(#"{"dry_run": true, "extra_slots": 0.25}"#.utf8))
    }
}
