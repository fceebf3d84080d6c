import JindouWire
import Logging
import NIOCore
import NIOPosix
import NIOSSL

/// What a connection's session wants done after a frame.
public enum SessionAction: Sendable {
    case reply(Frame)
    /// Reply, then close the connection (handshake refused, stream lost).
    case replyAndClose(Frame)
    case close
    /// Reply on this connection, then serve every later frame from `channel` (shared
    /// memory the session has just mapped, an RDMA queue pair it has just connected); the
    /// connection stays open until either closes.
    case replyAndAttach(Frame, any FrameChannel)
}

/// Per-connection protocol logic (handshake state and request handling).
public protocol FrameSession: Sendable {
    mutating func handle(_ event: InboundFrame) async -> SessionAction
}

/// A TCP server that runs one `FrameSession` per connection, frames in order, on
/// NIO's async channels (back-pressure comes from the channel's inbound stream).
public final class FrameServer: Sendable {
    public let channel: NIOAsyncChannel<NIOAsyncChannel<InboundFrame, Frame>, Never>
    private let logger: Logger
    /// A connection that has not sent its first frame (HELLO) this long after it was
    /// accepted is closed, so idle or slow peers cannot hold connections open.
    private let handshakeTimeout: TimeAmount?

    /// Binds `endpoint` (port 0 picks a free port; see `boundEndpoint`). With `tls`, every
    /// connection must complete mutual TLS before any frame is read; a failed TLS handshake
    /// closes it and is logged.
    public init(
        endpoint: Endpoint, group: EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        maximumPayloadLength: Int = WireProtocol.defaultMaximumPayloadLength, tls: NIOSSLContext? = nil,
        handshakeTimeout: TimeAmount? = nil, logger: Logger
    ) async throws {
        self.logger = logger
        self.handshakeTimeout = handshakeTimeout
        channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            // A peer that half-closes after its last frame still gets every reply: the end of
            // input ends the session loop, which closes once the replies are written.
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .bind(host: endpoint.host, port: endpoint.port) { child in
                child.eventLoop.makeCompletedFuture {
                    if let tls {
                        try child.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls))
                    }
                    try child.pipeline.syncOperations.addHandler(
                        ByteToMessageHandler(FrameDecodingHandler(maximumPayloadLength: maximumPayloadLength)))
                    try child.pipeline.syncOperations.addHandler(MessageToByteHandler(FrameEncodingHandler()))
                    return try NIOAsyncChannel<InboundFrame, Frame>(wrappingChannelSynchronously: child)
                }
            }
    }

    /// The address actually bound.
    public var boundEndpoint: Endpoint? {
        guard let address = channel.channel.localAddress, let port = address.port else { return nil }
        return Endpoint(host: address.ipAddress ?? "127.0.0.1", port: port)
    }

    /// Accepts connections until cancelled; each gets a fresh session from `makeSession`.
    public func run<Session: FrameSession>(makeSession: @escaping @Sendable () -> Session) async throws {
        try await withThrowingDiscardingTaskGroup { group in
            try await channel.executeThenClose { connections in
                for try await connection in connections {
                    let remote = connection.channel.remoteAddress?.description ?? "unknown"
                    group.addTask { [logger, handshakeTimeout] in
                        do {
                            try await Self.serve(connection, session: makeSession(), handshakeTimeout: handshakeTimeout)
                        } catch let error as NIOSSLError {
                            logger.warning("refused connection: TLS failed", metadata: ["peer": "\(remote)", "error": "\(error)"])
                        } catch let error as BoringSSLError {
                            logger.warning("refused connection: TLS failed", metadata: ["peer": "\(remote)", "error": "\(error)"])
                        } catch {
                            logger.debug("connection ended", metadata: ["peer": "\(remote)", "error": "\(error)"])
                        }
                    }
                }
            }
        }
    }

    private static func serve<Session: FrameSession>(_ connection: NIOAsyncChannel<InboundFrame, Frame>, session: Session,
                                                     handshakeTimeout: TimeAmount?) async throws {
        var session = session
        // Closing the channel ends the inbound stream below; the first frame cancels it.
        let deadline = handshakeTimeout.map { timeout in
            connection.channel.eventLoop.scheduleTask(in: timeout) { connection.channel.close(promise: nil) }
        }
        try await connection.executeThenClose { inbound, outbound in
            var frames = inbound.makeAsyncIterator()
            while let event = try await frames.next() {
                deadline?.cancel()
                switch await session.handle(event) {
                case .reply(let frame):
                    try await outbound.write(frame)
                case .replyAndClose(let frame):
                    try await outbound.write(frame)
                    return
                case .close:
                    return
                case .replyAndAttach(let frame, let rings):
                    try await outbound.write(frame)
                    let served = session
                    try await withThrowingTaskGroup(of: Void.self) { group in
                        group.addTask {
                            await serve(rings, session: served)
                            connection.channel.close(promise: nil)
                        }
                        // The connection now only says whether the peer lives: its end (or any
                        // frame, which a coordinator must no longer send here) ends the channel.
                        _ = try? await frames.next()
                        rings.close()
                        try await group.waitForAll()
                    }
                    return
                }
            }
        }
    }

    /// Serves frames from a channel (shared memory, RDMA) in order until it closes.
    private static func serve<Session: FrameSession>(_ rings: any FrameChannel, session: Session) async {
        var session = session
        let (events, continuation) = AsyncStream.makeStream(of: InboundFrame.self)
        rings.startReceiving(maximumPayloadLength: WireProtocol.defaultMaximumPayloadLength, deliver: { continuation.yield($0) },
                             idle: {}, finished: { _ in continuation.finish() })
        for await event in events {
            let action = await session.handle(event)
            do {
                switch action {
                case .reply(let frame):
                    try await rings.send(frame)
                case .replyAndClose(let frame):
                    try await rings.send(frame)
                    rings.close()
                case .close, .replyAndAttach:
                    rings.close()
                }
            } catch {
                rings.close()
            }
        }
    }
}
