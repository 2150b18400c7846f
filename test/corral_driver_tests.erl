%% The driver's port lifecycle (c_src/driver/lifecycle.h) seen through the
%% API: what each phase and stdin state means for the owner.
-module(corral_driver_tests).

-include_lib("eunit/include/eunit.hrl").

%% Stdin Closing: bytes written after close_stdin/1 go nowhere, those
%% before it are all delivered.
writes_after_close_stdin_are_dropped_test() ->
    {ok, Port} = corral:open("cat", [], []),
    ok = corral:write(Port, <<"before">>),
    ok = corral:close_stdin(Port),
    ok = corral:write(Port, <<"after">>),
    ?assertEqual({<<"before">>, {exit_status, 0}}, drain(Port, <<>>, ack)).

%% Draining after Exit: the rest of the output comes whatever the credit,
%% so an owner that never acks still gets every byte and the terminal
%% message.
exit_lifts_the_window_test() ->
    {ok, Port} = corral:open("sh", ["-c", "printf 0123456789abcdefghij"], [{window, 10}]),
    ?assertEqual({<<"0123456789abcdefghij">>, {exit_status, 0}}, drain(Port, <<>>, no_ack)).

%% One spawn per port: a second SPAWN is refused while the first runs.
one_spawn_per_port_test() ->
    {ok, Port} = corral:open("sleep", ["30"], []),
    %% OP_SPAWN is 1 (include/corral_protocol.hrl).
    ?assertEqual(<<1, "ealready">>, port_control(Port, 1, <<>>)),
    ?assertEqual({exit_signal, 15}, corral:stop(Port, 5000)).

drain(Port, Acc, Ack) ->
    receive
        {Port, {data, stdout, Bin}} ->
            _ = Ack =:= ack andalso corral:ack(Port, byte_size(Bin)),
            drain(Port, <<Acc/binary, Bin/binary>>, Ack);
        {Port, {data, stderr, _}} ->
            drain(Port, Acc, Ack);
        {Port, {started, _}} ->
            drain(Port, Acc, Ack);
        {Port, Terminal} ->
            corral:flush_exit(Port),
            {Acc, Terminal}
    after 3000 -> error({no_terminal, Acc})
    end.
