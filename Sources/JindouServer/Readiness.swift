import Foundation
import Hummingbird
import JindouAdmin
import NIOCore
import Synchronization

/// Whether the server can compute the model, and the startup wait that goes with it.
///
/// `/health` is liveness (the process serves HTTP); `/ready` is this gate's probe. Until
/// the cluster has been ready once (the first placement staged and switched), requests
/// wait here for up to `startupWait` instead of failing with "expert … is not served";
/// after that wait they fail with 503 naming what is unserved. Once the cluster has been
/// ready, requests are never held: a worker lost later fails its requests fast, as the
/// failover rules say (docs/admin-api.md).
public final class ReadinessGate: Sendable {
    private let probe: @Sendable () async -> ReadinessReport
    public let startupWait: Duration
    private let everReady = Atomic<Bool>(false)

    public init(startupWait: Duration = .seconds(60), probe: @escaping @Sendable () async -> ReadinessReport) {
        self.startupWait = startupWait
        self.probe = probe
    }

    /// A server that is ready as soon as it runs (a single-process engine).
    public static var always: ReadinessGate { ReadinessGate(startupWait: .zero) { ReadinessReport(ready: true) } }

    /// The current readiness.
    public func report() async -> ReadinessReport {
        let report = await probe()
        if report.ready { everReady.store(true, ordering: .relaxed) }
        return report
    }

    /// Returns once the cluster is ready; throws `NotReady` if it has not been ready yet and
    /// does not become so within `startupWait`.
    public func admit() async throws {
        if everReady.load(ordering: .relaxed) { return }
        let deadline = ContinuousClock.now + startupWait
        while true {
            let current = await report()
            if current.ready { return }
            if ContinuousClock.now >= deadline { throw NotReady(report: current, waited: startupWait) }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    /// Waits without a limit until the cluster is ready (for `--wait-ready`).
    public func waitUntilReady() async throws {
        while !(await report().ready) { try await Task.sleep(for: .milliseconds(50)) }
    }

    /// A request that waited `startupWait` for a cluster that never became ready.
    public struct NotReady: Error, CustomStringConvertible {
        public let report: ReadinessReport
        public let waited: Duration
        public var description: String {
            "the cluster is not ready after waiting \(waited.components.seconds) s: \(report.reason ?? "experts are not served")"
        }
    }
}

/// The request body, at most `limit` bytes; a larger one is refused before it is read
/// when it announces its length, and as soon as it passes the limit otherwise.
enum RequestBodyLimit {
    struct TooLarge: Error, CustomStringConvertible {
        let limit: Int
        var description: String { "The request body is larger than this server accepts (\(limit) bytes; --max-request-bytes)." }
    }

    static func collect(_ request: Request, limit: Int) async throws -> ByteBuffer {
        if let length = request.headers[.contentLength].flatMap({ Int($0) }), length > limit { throw TooLarge(limit: limit) }
        do {
            return try await request.body.collect(upTo: limit)
        } catch is NIOTooManyBytesError {
            throw TooLarge(limit: limit)
        }
    }
}
