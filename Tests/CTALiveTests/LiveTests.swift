import CTACoordinator
import CTALive
import CTAMongo
import Foundation
import Testing

@Suite("Live feed protocol")
struct LiveProtocolTests {
    func error(_ text: String) -> LiveProtocolError? {
        if case .failure(let error) = LiveProtocol.decode(text) { return error }
        return nil
    }

    @Test("subscribe, unsubscribe and ping decode; a cursor is read")
    func decodes() throws {
        let cursor = LiveCursor(token: ResumeToken(["_data": "00ff"]))
        #expect(
            try LiveProtocol.decode(#"{"op":"subscribe","id":"s1","execution":"01J"}"#).get()
                == .subscribe(id: "s1", target: .execution("01J"), after: nil))
        #expect(
            try LiveProtocol.decode(#"{"op":"subscribe","id":"s2","scenario":"smoke","after":"\#(cursor)"}"#).get()
                == .subscribe(id: "s2", target: .scenario("smoke"), after: cursor))
        #expect(
            try LiveProtocol.decode(#"{"op":"subscribe","id":"s3","machines":true}"#).get()
                == .subscribe(id: "s3", target: .machines, after: nil))
        #expect(try LiveProtocol.decode(#"{"op":"unsubscribe","id":"s1"}"#).get() == .unsubscribe(id: "s1"))
        #expect(try LiveProtocol.decode(#"{"op":"ping"}"#).get() == .ping)
    }

    @Test("frames that do not decode are named precisely")
    func refusals() {
        #expect(error("not json")?.code == "badRequest")
        #expect(error("[1,2]")?.code == "badRequest")
        #expect(error(#"{"id":"s1"}"#)?.field == "op")
        #expect(error(#"{"op":5}"#)?.field == "op")
        #expect(error(#"{"op":"dance"}"#)?.code == "invalidField")
        let unknown = error(#"{"op":"ping","extra":1}"#)
        #expect(unknown?.code == "unknownField")
        #expect(unknown?.field == "extra")
        #expect(error(#"{"op":"subscribe","execution":"e"}"#)?.field == "id")
        #expect(error(#"{"op":"subscribe","id":"","execution":"e"}"#)?.field == "id")
        #expect(error(#"{"op":"subscribe","id":"s","execution":5}"#)?.field == "execution")
        #expect(error(#"{"op":"subscribe","id":"s","machines":1}"#)?.field == "machines")
        #expect(error(#"{"op":"subscribe","id":"s","machines":false}"#)?.field == "machines")
        #expect(error(#"{"op":"subscribe","id":"s"}"#)?.code == "badRequest")
        #expect(error(#"{"op":"subscribe","id":"s","execution":"e","scenario":"x"}"#)?.code == "badRequest")
        let badCursor = error(#"{"op":"subscribe","id":"s","execution":"e","after":"1.%%%"}"#)
        #expect(badCursor?.field == "after")
        #expect(badCursor?.sub == "s")
        #expect(error(#"{"op":"subscribe","id":"s","execution":"e","after":7}"#)?.field == "after")
    }

    @Test("frames are JSON with the contract's keys; strings are escaped")
    func frames() throws {
        func object(_ text: String) throws -> [String: Any] {
            try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        }
        let error = try object(
            LiveProtocol.errorFrame(.init(code: "invalidField", message: "bad \"x\"\n", sub: "s\u{1}", field: "after")))
        #expect(error["type"] as? String == "error")
        #expect(error["sub"] as? String == "s\u{1}")
        let detail = try #require(error["error"] as? [String: Any])
        #expect(detail["code"] as? String == "invalidField")
        #expect(detail["message"] as? String == "bad \"x\"\n")
        #expect(detail["field"] as? String == "after")
        #expect(try object(LiveProtocol.pongFrame())["type"] as? String == "pong")
        let end = try object(LiveProtocol.endFrame(sub: "s1", phase: "finished"))
        #expect(end["phase"] as? String == "finished" && end["sub"] as? String == "s1")
        let event = try object(LiveProtocol.eventFrame(sub: "s1", cursor: "1.abc", type: "result", event: #"{"a":1}"#))
        #expect(event["cursor"] as? String == "1.abc")
        #expect((event["event"] as? [String: Any])?["a"] as? Int == 1)
    }

    @Test("a session refuses duplicate ids, unknown unsubscribes and too many subscriptions")
    func session() {
        var session = LiveSession(maximumSubscriptions: 2)
        #expect(session.receive(#"{"op":"subscribe","id":"a","machines":true}"#) == [.start(id: "a", target: .machines, after: nil)])
        #expect(session.receive(#"{"op":"subscribe","id":"a","scenario":"x"}"#).first.map(isError) == true)
        #expect(
            session.receive(#"{"op":"subscribe","id":"b","scenario":"x"}"#)
                == [.start(id: "b", target: .scenario("x"), after: nil)])
        #expect(session.receive(#"{"op":"subscribe","id":"c","scenario":"x"}"#).first.map(isError) == true)
        #expect(session.receive(#"{"op":"unsubscribe","id":"a"}"#) == [.stop(id: "a")])
        #expect(session.receive(#"{"op":"unsubscribe","id":"a"}"#).first.map(isError) == true)
        session.ended("b")
        #expect(session.active.isEmpty)
        #expect(session.receive(#"{"op":"ping"}"#) == [.send(LiveProtocol.pongFrame())])
        #expect(session.receiveBinary().first.map(isError) == true)
    }

    func isError(_ action: LiveSession.Action) -> Bool {
        if case .send(let text) = action { return text.contains(#""type":"error""#) }
        return false
    }
}
