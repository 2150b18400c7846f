%% The driver and include/corral_protocol.hrl agree: every OP_* the .hrl
%% defines is a command the driver carries out, and the stats reply is the
%% documented map.
-module(corral_protocol_tests).

-include_lib("eunit/include/eunit.hrl").
-include("corral_protocol.hrl").

%% How to check each command, given its number. Each check tells its
%% command apart from every other: a number that named another command
%% would get another reply, or another terminal message.
checks() ->
    #{
        'OP_SPAWN' => on_cat(fun(P, N) -> ?assertEqual(<<1, "ealready">>, port_control(P, N, <<>>)) end),
        'OP_ACK' => on_cat(fun(P, N) -> ?assertEqual(<<>>, port_control(P, N, <<0:64/native>>)) end),
        %% A window of 0 is refused; an ack of 0 is not.
        'OP_SET_WINDOW' => on_cat(fun(P, N) ->
            ?assertEqual(<<1, "einval">>, port_control(P, N, <<0:64/native>>)),
            ?assertEqual(<<>>, port_control(P, N, <<65536:64/native>>))
        end),
        'OP_OSPID' => on_cat(fun(P, N) ->
            {ok, Pid} = corral:os_pid(P),
            ?assertEqual(<<Pid:64/native>>, port_control(P, N, <<>>))
        end),
        'OP_STATS' => on_cat(fun(P, N) -> ?assertMatch(#{}, binary_to_term(port_control(P, N, <<>>))) end),
        %% The leaf directories: the first (v2, when there is one) holds the child.
        'OP_CGROUPS' => on_cat(fun(P, N) ->
            {ok, Pid} = corral:os_pid(P),
            case binary:split(port_control(P, N, <<>>), <<0>>) of
                [<<>> | _] ->
                    ok;
                [<<"/", _/binary>> = V2 | _] ->
                    {ok, Procs} = file:read_file(filename:join(V2, "cgroup.procs")),
                    ?assert(lists:member(integer_to_binary(Pid), binary:split(Procs, <<"\n">>, [global])))
            end
        end),
        %% The v1<->v2 cgroup table (c_src/common/cgroup_table.h), with no
        %% child needed.
        'OP_CGROUP_V1' => on_cat(fun(P, N) ->
            Table = port_control(P, N, <<"T">>),
            Line = <<"memory.max memory memory.limit_in_bytes\n">>,
            ?assertMatch({_, _}, binary:match(Table, Line)),
            ?assertEqual(<<"+max\n">>, port_control(P, N, <<"G", 0, "memory.max", 0, "+-1\n">>))
        end),
        %% cat sees EOF and exits by itself.
        'OP_CLOSE_STDIN' => fun(N) ->
            {ok, P} = corral:open("cat", [], []),
            ?assertEqual(<<>>, port_control(P, N, <<>>)),
            ?assertEqual({exit_status, 0}, corral:await_terminal(P, 5000))
        end,
        'OP_SIGNAL' => fun(N) ->
            {ok, P} = corral:open("sleep", ["30"], []),
            ?assertEqual(<<>>, port_control(P, N, <<10:32/native>>)),
            ?assertEqual({exit_signal, 10}, corral:await_terminal(P, 5000))
        end,
        'OP_STOP' => fun(N) ->
            {ok, P} = corral:open("sleep", ["30"], []),
            ?assertEqual(<<>>, port_control(P, N, <<>>)),
            ?assertEqual({exit_signal, 15}, corral:await_terminal(P, 5000))
        end
    }.

on_cat(F) ->
    fun(N) ->
        {ok, P} = corral:open("cat", [], []),
        F(P, N),
        ?assertEqual({exit_signal, 15}, corral:stop(P, 5000))
    end.

every_op_of_the_hrl_is_a_driver_command_test() ->
    Ops = hrl_ops(),
    Checks = checks(),
    %% A new command needs a check here.
    ?assertEqual(lists:sort(maps:keys(Checks)), lists:sort([Name || {Name, _} <- Ops])),
    [(maps:get(Name, Checks))(N) || {Name, N} <- Ops],
    %% And the driver knows no command beyond them.
    Highest = lists:max([N || {_, N} <- Ops]),
    {ok, P} = corral:open("cat", [], []),
    ?assertEqual(<<1, "einval">>, port_control(P, Highest + 1, <<>>)),
    ?assertEqual({exit_signal, 15}, corral:stop(P, 5000)).

%% The macros corral.erl uses are the ones in the file.
macros_are_the_hrl_test() ->
    Ops = maps:from_list(hrl_ops()),
    ?assertEqual(?OP_SPAWN, maps:get('OP_SPAWN', Ops)),
    ?assertEqual(?OP_STATS, maps:get('OP_STATS', Ops)),
    ?assertEqual(?OP_SET_WINDOW, maps:get('OP_SET_WINDOW', Ops)).

stats_is_the_documented_map_test() ->
    {ok, Port} = corral:open("cat", [], []),
    ok = corral:write(Port, <<"abc">>),
    receive
        {Port, {data, stdout, <<"abc">>}} -> ok
    after 5000 -> error(no_echo)
    end,
    {ok, Stats} = corral:stats(Port),
    ?assertEqual(
        [
            bytes_err,
            bytes_in,
            bytes_out,
            cgroup,
            duration_ms,
            read_count,
            stdin_queued,
            unacked,
            write_count
        ],
        lists:sort(maps:keys(Stats))
    ),
    ?assertMatch(#{bytes_in := 3, bytes_out := 3, unacked := 3, stdin_queued := 0}, Stats),
    [?assert(is_integer(V) andalso V >= 0) || V <- maps:values(maps:remove(cgroup, Stats))],
    ?assert(is_map(maps:get(cgroup, Stats))),
    ?assertMatch({exit_signal, _}, corral:stop(Port, 5000)).

%% {Name, Number} of every -define(OP_..., N). in the .hrl, read the way
%% c_src/CMakeLists.txt reads it.
hrl_ops() ->
    Beam = code:which(corral),
    Hrl = filename:join([filename:dirname(filename:dirname(Beam)), "include", "corral_protocol.hrl"]),
    {ok, Text} = file:read_file(Hrl),
    {match, Found} = re:run(
        Text, "^-define\\((OP_[A-Z0-9_]+), *([0-9]+)\\)\\.", [multiline, global, {capture, all_but_first, binary}]
    ),
    [{binary_to_atom(Name), binary_to_integer(N)} || [Name, N] <- Found].
