import AsyncHTTPClient
import Foundation
import JindouAdmin
import JindouCoordinator
import JindouModel
import JindouTestSupport
import JindouTransport
import JindouWire
import NIOSSL
import Testing

/// Mutual TLS on node links and the admin API: only holders of a certificate from the
/// cluster's CA get in.
@Suite("Mutual TLS", .serialized)
struct MutualTLSTests {
    let fixture = "qwen3-moe-tiny"

    func certificates(_ nodes: String) throws -> String {
        let directory = Scratch.directory + "jindou-tls-\(UUID().uuidString)"
        let result = try Executable("jindouctl").run(["certs", "init", "--out", directory, "--nodes", nodes])
        guard result.status == 0 else { throw HarnessError("certs init failed: \(result.stderr)") }
        return directory
    }

    func flags(_ directory: String, _ node: String) -> [String] {
        ["--tls-ca", directory + "/ca.pem", "--tls-cert", directory + "/\(node).pem", "--tls-key", directory + "/\(node)-key.pem"]
    }

    @Test func onlyCertificatesFromTheClusterCAAreServed() async throws {
        let cluster = try certificates("coordinator,w0,admin")
        let other = try certificates("w0,admin")  // another cluster's CA
        let token = cluster + "/token"
        let coordinator = try CoordinatorProcess(
            fixture: fixture, arguments: ["--token-file", token] + flags(cluster, "coordinator"))
        defer { coordinator.stop() }
        #expect(coordinator.url.hasPrefix("https://"))
        let member = try WorkerProcess(fixture: fixture, experts: nil, name: "w0",
                                       extraArguments: ["--join", coordinator.url, "--token-file", token] + flags(cluster, "w0"))
        defer { member.stop() }
        let secret = try ClusterSecret(contentsOfFile: token).token
        let admin = try AdminClient(coordinator.url, token: secret, timeoutSeconds: 30,
                                    tls: NodeTLS(directory: cluster, name: "admin"))
        // Generous: this suite starts while every other suite is starting processes.
        try await eventually(.seconds(60), "w0 serves every expert over TLS") {
            let status = try await admin.get("v1/admin/status", as: ClusterStatus.self)
            return status.settled && status.servedExperts == status.totalExperts
        }
        let expected = try await RequestStream.expectations(fixture: fixture)[0]
        #expect(try await admin.post("v1/jindou/generate", expected.body, as: GenerationReport.self).tokenIDs == expected.tokens)

        // An admin client with another CA's certificate, or with none, is refused at the TLS handshake.
        let stranger = try AdminClient(coordinator.url, token: secret, timeoutSeconds: 2, tls: NodeTLS(directory: other, name: "admin"))
        await #expect(throws: AdminClientError.self) { try await stranger.get("v1/admin/status", as: ClusterStatus.self) }
        var anonymousTLS = TLSConfiguration.makeClientConfiguration()
        anonymousTLS.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(cluster + "/ca.pem"))
        anonymousTLS.certificateVerification = .noHostnameVerification
        let anonymous = HTTPClient(eventLoopGroupProvider: .singleton, configuration: .init(tlsConfiguration: anonymousTLS))
        do {
            var request = HTTPClientRequest(url: coordinator.url + "/v1/admin/status")
            request.headers.add(name: "Authorization", value: "Bearer \(secret)")
            _ = try await anonymous.execute(request, timeout: .seconds(2))
            Issue.record("a client without a certificate was served")
        } catch {}
        try await anonymous.shutdown()

        // A worker with another CA's certificate never joins.
        let impostor = try WorkerProcess(fixture: fixture, experts: nil, name: "impostor",
                                         extraArguments: ["--join", coordinator.url, "--token-file", token] + flags(other, "w0"))
        defer { impostor.stop() }
        try await Task.sleep(for: .seconds(1))
        #expect(try await !admin.get("v1/admin/status", as: ClusterStatus.self).workers.contains { $0.name == "impostor" })

        // The worker's data plane refuses a coordinator without a cluster certificate …
        let tlsWorker = member.endpoint
        let plain = try WorkerPool(fingerprint: "x", logger: testLogger)
        await #expect(throws: ClusterError.self) { try await plain.add(tlsWorker) }
        let foreign = try WorkerPool(fingerprint: "x", tls: NodeTLS(directory: other, name: "w0"), logger: testLogger)
        await #expect(throws: ClusterError.self) { try await foreign.add(tlsWorker) }
        // … and still serves its own cluster.
        #expect(try await admin.post("v1/jindou/generate", expected.body, as: GenerationReport.self).tokenIDs == expected.tokens)
    }
}
