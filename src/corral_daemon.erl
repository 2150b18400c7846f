%% @doc A long-running OS program in a supervision tree, its output sent to
%% `logger'. Elixir's `Corral.Daemon' is this module with Elixir's argument
%% forms; its documentation describes the behaviour in full.
%%
%% ```
%% ChildSpec = corral_daemon:child_spec(["dnsmasq", ["-k"], [{log_output, info}]]),
%% '''
%%
%% <ul>
%% <li>The gen_server ends when the program exits: `normal' for status 0,
%%     `ExitStatusToReason(Status)' (default `{exit_status, Status}') for
%%     another, `{exit_signal, N}' for death by signal N (`{exit_signal, N,
%%     oom_kill}' when the OOM killer did it), `{error, Reason}'
%%     when the program was lost. So `transient' restarts it on failure
%%     only.</li>
%% <li>Stopping the gen_server stops the program's whole process tree and
%%     returns once it is gone (SIGKILL fitted in `shutdown'); output
%%     written meanwhile is still logged.</li>
%% <li>Output is split into lines ({@link corral_lines}, `max_line_length'
%%     default 1 MiB), invalid UTF-8 replaced by U+FFFD, and each line
%%     logged as `[Prefix, Line]' at its stream's level with the metadata
%%     `corral_stream'; or given to `logger_fun'. A chunk is acknowledged
%%     only once its lines were logged, so unlogged output stays within the
%%     credit window.</li>
%% </ul>
%%
%% Options: those of {@link corral_opts:normalize/4} in the `daemon'
%% context, and `name' (`{local, Name}', `{global, _}', `{via, _, _}', or
%% an atom), `shutdown' (the supervisor's, to fit SIGKILL in),
%% `start_counter' (set by {@link child_spec/1}).
-module(corral_daemon).

-behaviour(gen_server).

-export([
    start_link/1,
    start_link/3,
    child_spec/1,
    os_pid/1,
    statistics/1,
    write/2,
    signal/2,
    cgroup_config/1,
    cgroup_path/1,
    cgget/2,
    cgset/3,
    fit_shutdown/2
]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2, terminate/2, format_status/2]).

%% Output is split into lines this many bytes at a time, so that a chunk of
%% short lines never becomes one list of many thousand lines.
-define(SLICE, 4096).
%% How often a ready fun or TCP port is tried.
-define(POLL_MS, 50).

-record(s, {
    port :: port() | undefined,
    os_pid :: pos_integer(),
    n :: map(),
    lines :: #{stdout := corral_lines:state(), stderr := corral_lines:state()},
    started_at :: integer(),
    started_mono :: integer(),
    start_counter :: counters:counters_ref() | undefined,
    ready :: corral_opts:ready() | ready,
    stdout_bytes = 0 :: non_neg_integer(),
    stderr_bytes = 0 :: non_neg_integer(),
    line_count = 0 :: non_neg_integer(),
    %% The latest memory.events counts with the memory_events option.
    memory_events :: map() | undefined
}).

%%% ------------------------------------------------------------------------
%%% API

%% @doc Starts `Cmd' with `Args' under a gen_server linked to the caller.
%% Errors come back as `{error, Reason}' without a crash report: bad
%% options (as corral_opts names them), `enoent', `{Errno, Stage}',
%% `{wait_for_failed, Reason}', `{ready_timeout, Check, Ms}',
%% `{exited_before_ready, Status}'.
-spec start_link(iodata() | atom(), [iodata() | atom()], corral_opts:options()) ->
    {ok, pid()} | {error, term()}.
start_link(Cmd, Args, Opts) ->
    case own_options(Opts) of
        {ok, Own, Rest} ->
            Ref = make_ref(),
            Init = {Cmd, Args, Rest, Own, {self(), Ref}},
            Started =
                case maps:get(name, Own) of
                    undefined -> gen_server:start_link(?MODULE, Init, []);
                    Name -> gen_server:start_link(Name, ?MODULE, Init, [])
                end,
            %% A failed start is reported by message and `ignore', which
            %% neither logs a crash report nor takes the caller down.
            case Started of
                ignore ->
                    receive
                        {Ref, Reason} -> {error, Reason}
                    end;
                Other ->
                    Other
            end;
        Error ->
            Error
    end.

%% @doc {@link start_link/3} with `[Cmd, Args]' or `[Cmd, Args, Opts]'.
-spec start_link(list()) -> {ok, pid()} | {error, term()}.
start_link([Cmd, Args]) -> start_link(Cmd, Args, []);
start_link([Cmd, Args, Opts]) -> start_link(Cmd, Args, Opts);
start_link(Other) -> {error, {bad_arg, Other}}.

%% @doc The child spec of `[Cmd, Args]' or `[Cmd, Args, Opts]'. `Opts' may
%% hold `id' (default `corral_daemon'), `restart' (default `permanent') and
%% `shutdown' (default 5000, also passed to the gen_server).
-spec child_spec(list()) -> supervisor:child_spec().
child_spec([Cmd, Args]) ->
    child_spec([Cmd, Args, []]);
child_spec([Cmd, Args, Opts0]) ->
    Opts = to_list(Opts0),
    Take = fun(K, Default, L) -> {proplists:get_value(K, L, Default), lists:keydelete(K, 1, L)} end,
    {Id, O1} = Take(id, ?MODULE, Opts),
    {Restart, O2} = Take(restart, permanent, O1),
    {Shutdown, O3} = Take(shutdown, 5000, O2),
    {Counter, O4} = Take(start_counter, counters:new(1, []), O3),
    #{
        id => Id,
        start =>
            {?MODULE, start_link, [[Cmd, Args, O4 ++ [{start_counter, Counter}, {shutdown, Shutdown}]]]},
        restart => Restart,
        shutdown => Shutdown,
        type => worker
    }.

%% @doc The program's OS pid (also its process group id), as an integer, as
%% `MuonTrap.Daemon.os_pid/1' returns it; `error' once the program has
%% exited (while `min_uptime' holds the gen_server), since the pid may then
%% belong to another process.
-spec os_pid(gen_server:server_ref()) -> pos_integer() | error.
os_pid(Server) -> gen_server:call(Server, os_pid).

%% @doc `#{output_byte_count, stdout_bytes, stderr_bytes, lines,
%% started_at, uptime_ms, restarts, cgroup}', and `memory_events' with that
%% option: see Corral.Daemon.statistics/1.
-spec statistics(gen_server:server_ref()) -> #{atom() => integer()}.
statistics(Server) -> gen_server:call(Server, statistics).

%% @doc Writes to the program's stdin from the caller.
-spec write(gen_server:server_ref(), iodata()) -> ok | {error, closed | {bad_data, term()}}.
write(Server, Data) ->
    case gen_server:call(Server, port) of
        closed -> {error, closed};
        Port -> corral:write(Port, Data)
    end.

%% @doc Sends a signal (`sighup', `hup', a number) to the program's group.
-spec signal(gen_server:server_ref(), atom() | 1..64) ->
    ok | {error, not_running | {bad_signal, term()}}.
signal(Server, Sig) ->
    case corral_opts:signal_number(Sig) of
        {ok, N} -> gen_server:call(Server, {signal, N});
        error -> {error, {bad_signal, Sig}}
    end.

%% @doc The `cgroup' option the daemon was started with, as given (`#{}'
%% without one).
-spec cgroup_config(gen_server:server_ref()) -> map().
cgroup_config(Server) -> gen_server:call(Server, cgroup_config).

%% @doc The directory of the program's leaf cgroup: the v2 one, or the
%% first v1 one where the host has no v2 tree.
-spec cgroup_path(gen_server:server_ref()) -> binary() | {error, not_running | no_cgroup}.
cgroup_path(Server) ->
    case gen_server:call(Server, cgroup_dirs) of
        {ok, #{v2 := V2}} when V2 =/= undefined -> V2;
        {ok, #{v1 := [V1 | _]}} -> V1;
        {ok, _} -> {error, no_cgroup};
        {error, _} -> {error, not_running}
    end.

%% @doc Reads one interface file (`"memory.peak"') of the program's cgroups.
-spec cgget(gen_server:server_ref(), iodata()) -> {ok, binary()} | {error, term()}.
cgget(Server, File) ->
    case gen_server:call(Server, cgroup_dirs) of
        {ok, Dirs} -> corral_cgroup:get(Dirs, File);
        {error, _} -> {error, not_running}
    end.

%% @doc Writes one interface file of the program's cgroups.
-spec cgset(gen_server:server_ref(), iodata(), iodata() | integer()) -> ok | {error, term()}.
cgset(Server, File, Value) ->
    case gen_server:call(Server, cgroup_dirs) of
        {ok, Dirs} -> corral_cgroup:set(Dirs, File, Value);
        {error, _} -> {error, not_running}
    end.

%% @private Lowers the normalized `kill_timeout' so that SIGKILL comes early
%% enough for the tree to be gone before the supervisor's shutdown time
%% runs out and it kills the gen_server (after which the tree would be
%% stopped without anyone waiting for it). Corral.Process uses it too.
-spec fit_shutdown(map(), infinity | brutal_kill | non_neg_integer()) -> map().
fit_shutdown(N, infinity) ->
    N;
fit_shutdown(#{request := R} = N, brutal_kill) ->
    N#{request := R#{kill_timeout := 0}};
fit_shutdown(#{request := #{kill_timeout := K} = R} = N, Ms) ->
    N#{request := R#{kill_timeout := min(K, max(Ms - 500, Ms div 2))}}.

to_list(M) when is_map(M) -> maps:to_list(M);
to_list(L) -> L.

own_options(Opts0) when is_map(Opts0); is_list(Opts0), length(Opts0) >= 0 ->
    Opts = to_list(Opts0),
    Own = #{
        name => name(proplists:get_value(name, Opts)),
        shutdown => proplists:get_value(shutdown, Opts, infinity),
        start_counter => proplists:get_value(start_counter, Opts)
    },
    %% Anything that is not one of ours, well-formed or not, goes on to
    %% corral_opts, which names what is wrong with it.
    Rest = [O || O <- Opts, not own_key(O)],
    Shutdown = maps:get(shutdown, Own),
    Counter = maps:get(start_counter, Own),
    Name = maps:get(name, Own),
    if
        not (Shutdown =:= infinity orelse Shutdown =:= brutal_kill orelse
            (is_integer(Shutdown) andalso Shutdown >= 0)) ->
            {error, {bad_option, shutdown, Shutdown}};
        Counter =/= undefined andalso not is_tuple(Counter) ->
            {error, {bad_option, start_counter, Counter}};
        Name =:= bad ->
            {error, {bad_option, name, proplists:get_value(name, Opts)}};
        true ->
            {ok, Own, Rest}
    end;
own_options(Opts) ->
    {error, {bad_option, options, Opts}}.

own_key({K, _}) -> lists:member(K, [name, shutdown, start_counter]);
own_key(_) -> false.

%% gen_server's name forms; `bad' for anything else.
name(undefined) -> undefined;
name(nil) -> undefined;
name(Name) when is_atom(Name) -> {local, Name};
name({local, Name} = N) when is_atom(Name) -> N;
name({global, _} = N) -> N;
name({via, M, _} = N) when is_atom(M) -> N;
name(_) -> bad.

%%% ------------------------------------------------------------------------
%%% gen_server

init({Cmd, Args, Opts, Own, {Starter, Ref}}) ->
    %% A supervisor's shutdown must run terminate/2, which stops the tree.
    process_flag(trap_exit, true),
    case maps:get(start_counter, Own) of
        undefined -> ok;
        C -> counters:add(C, 1, 1)
    end,
    case start(Cmd, Args, Opts, Own) of
        {ok, S} ->
            {ok, S};
        {error, Reason} ->
            Starter ! {Ref, Reason},
            ignore
    end.

start(Cmd, Args, Opts, Own) ->
    maybe_start(corral_opts:normalize(Cmd, Args, Opts, daemon), Cmd, Args, Own).

maybe_start({error, _} = Error, _, _, _) ->
    Error;
maybe_start({ok, N0}, Cmd, Args, Own) ->
    N = fit_shutdown(N0, maps:get(shutdown, Own)),
    case run_wait_for(maps:get(wait_for, N)) of
        ok ->
            case corral:spawn_normalized(N) of
                {ok, Port, OsPid} ->
                    Meta = maps:get(logger_metadata, N) ++ [{corral_cmd, Cmd}, {corral_args, Args}],
                    logger:update_process_metadata(maps:from_list(Meta)),
                    Max = maps:get(lines, N),
                    S = #s{
                        port = Port,
                        os_pid = OsPid,
                        n = N,
                        lines = #{stdout => corral_lines:new(Max), stderr => corral_lines:new(Max)},
                        started_at = erlang:system_time(millisecond),
                        started_mono = erlang:monotonic_time(millisecond),
                        start_counter = maps:get(start_counter, Own),
                        ready = maps:get(ready, N),
                        memory_events =
                            case maps:is_key(memory_events, maps:get(request, N)) of
                                true -> #{};
                                false -> undefined
                            end
                    },
                    case await_ready(S) of
                        {ok, S1} ->
                            {ok, S1};
                        {error, Reason, S1} ->
                            stop_program(S1),
                            {error, Reason}
                    end;
                Error ->
                    Error
            end;
        Error ->
            Error
    end.

run_wait_for(undefined) ->
    ok;
run_wait_for(Fun) ->
    try Fun() of
        {error, Reason} -> {error, {wait_for_failed, Reason}};
        _ -> ok
    catch
        error:Reason -> {error, {wait_for_failed, Reason}};
        Class:Reason -> {error, {wait_for_failed, {Class, Reason}}}
    end.

handle_call(os_pid, _From, #s{port = undefined} = S) ->
    {reply, error, S};
handle_call(os_pid, _From, S) ->
    {reply, S#s.os_pid, S};
%% After the program exited (while min_uptime runs), the port is gone.
handle_call(port, _From, #s{port = undefined} = S) ->
    {reply, closed, S};
handle_call(port, _From, S) ->
    {reply, S#s.port, S};
handle_call({signal, _}, _From, #s{port = undefined} = S) ->
    {reply, {error, not_running}, S};
handle_call({signal, N}, _From, S) ->
    {reply, corral:signal(S#s.port, N), S};
handle_call(cgroup_config, _From, #s{n = N} = S) ->
    {reply, maps:get(cgroup_options, N, #{}), S};
handle_call(cgroup_dirs, _From, #s{port = undefined} = S) ->
    {reply, {error, closed}, S};
handle_call(cgroup_dirs, _From, S) ->
    {reply, corral:cgroup_dirs(S#s.port), S};
handle_call(statistics, _From, S) ->
    Restarts =
        case S#s.start_counter of
            undefined -> 0;
            C -> max(counters:get(C, 1) - 1, 0)
        end,
    Stats = #{
        output_byte_count => S#s.stdout_bytes + S#s.stderr_bytes,
        stdout_bytes => S#s.stdout_bytes,
        stderr_bytes => S#s.stderr_bytes,
        lines => S#s.line_count,
        started_at => S#s.started_at,
        uptime_ms => erlang:system_time(millisecond) - S#s.started_at,
        restarts => Restarts,
        cgroup =>
            case S#s.port =/= undefined andalso corral:cgroup_dirs(S#s.port) of
                {ok, Dirs} -> corral_cgroup:stats(Dirs);
                _ -> #{}
            end
    },
    {reply,
        case S#s.memory_events of
            undefined -> Stats;
            Counts -> Stats#{memory_events => Counts}
        end,
        S}.

handle_cast(_, S) -> {noreply, S}.

handle_info({Port, Msg}, #s{port = Port} = S) ->
    case port_message(Msg, S) of
        {cont, S1} -> {noreply, S1};
        {exit, Terminal, S1} ->
            exit_after_min_uptime(exit_reason(Terminal, S1), S1#s{port = undefined})
    end;
handle_info({min_uptime, Reason}, S) ->
    {stop, Reason, S};
handle_info({'EXIT', Port, _}, #s{port = Port} = S) ->
    {noreply, S};
%% Trapping exits must not make links one-way: a linked process other than
%% the parent (which gen_server handles) that fails takes us down.
handle_info({'EXIT', _, normal}, S) ->
    {noreply, S};
handle_info({'EXIT', _, Reason}, S) ->
    {stop, Reason, S};
handle_info(_, S) ->
    {noreply, S}.

terminate(_Reason, S) -> stop_program(S).

%% Crash reports show the program, not its whole environment.
format_status(_Opt, [_PDict, #s{n = N} = S]) ->
    [{data, [{"State", S#s{n = maps:with([log, log_prefix, window, lines], N)}}]}].

%%% ------------------------------------------------------------------------
%%% Internals

%% A program that exits sooner than min_uptime after its start ends the
%% gen_server only once that time has passed: a crash loop restarts at most
%% once per min_uptime instead of exhausting the supervisor's intensity.
exit_after_min_uptime(Reason, #s{n = #{min_uptime := Min}} = S) ->
    case S#s.started_mono + Min - erlang:monotonic_time(millisecond) of
        Left when Left > 0 ->
            erlang:send_after(Left, self(), {min_uptime, Reason}),
            {noreply, S};
        _ ->
            {stop, Reason, S}
    end.

exit_reason({exit_status, 0}, _) -> normal;
exit_reason({exit_status, N}, #s{n = #{exit_status_to_reason := F}}) -> F(N);
exit_reason({exit_signal, N}, _) -> {exit_signal, N};
exit_reason({exit_signal, N, oom_kill}, _) -> {exit_signal, N, oom_kill};
exit_reason({error, Reason}, _) -> {error, Reason}.

%% Output is logged line by line and only then acknowledged, so unlogged
%% output never exceeds the window (plus the partial line each splitter
%% holds).
port_message({data, Kind, Bin}, S) ->
    S1 = log_slices(count(S, Kind, byte_size(Bin)), Kind, Bin),
    ok = corral:ack(S1#s.port, byte_size(Bin)),
    {cont, S1};
port_message({stdin_error, _}, S) ->
    {cont, S};
port_message({started, _}, S) ->
    {cont, S};
port_message({memory_events, Counts}, S) ->
    warn_memory(Counts, S),
    {cont, S#s{memory_events = Counts}};
port_message(Terminal, S) ->
    corral:flush_exit(S#s.port),
    S1 = lists:foldl(
        fun(Kind, Acc) ->
            {Lines, Splitter} = corral_lines:flush(maps:get(Kind, Acc#s.lines)),
            log_lines(Lines, Kind, Acc#s{lines = (Acc#s.lines)#{Kind := Splitter}})
        end,
        S,
        [stdout, stderr]
    ),
    {exit, Terminal, S1}.

%% A count of high, max, oom, oom_kill or oom_group_kill that went up
%% means the program is pressed against its memory limit: one warning
%% naming what went up, by how much, and the totals.
warn_memory(Counts, #s{n = N, memory_events = Old0}) ->
    Old =
        case Old0 of
            undefined -> #{};
            _ -> Old0
        end,
    Up = [
        io_lib:format("~s ~b (+~b)", [K, V, V - maps:get(K, Old, 0)])
     || K <- [high, max, oom, oom_kill, oom_group_kill],
        V <- [maps:get(K, Counts, 0)],
        V > maps:get(K, Old, 0)
    ],
    case Up of
        [] ->
            ok;
        _ ->
            logger:warning(
                [maps:get(log_prefix, N), "memory.events: ", lists:join(", ", Up)],
                #{corral_memory_events => Counts}
            )
    end.

count(S, stdout, B) -> S#s{stdout_bytes = S#s.stdout_bytes + B};
count(S, stderr, B) -> S#s{stderr_bytes = S#s.stderr_bytes + B}.

log_slices(S, _Kind, <<>>) ->
    S;
log_slices(S, Kind, Bin) ->
    {Slice, Rest} =
        case Bin of
            <<Sl:?SLICE/binary, R/binary>> -> {Sl, R};
            _ -> {Bin, <<>>}
        end,
    {Lines, Splitter} = corral_lines:feed(Slice, maps:get(Kind, S#s.lines)),
    S1 = log_lines(Lines, Kind, S#s{lines = (S#s.lines)#{Kind := Splitter}}),
    log_slices(S1, Kind, Rest).

log_lines(Lines, Kind, S) ->
    lists:foldl(fun(Line, Acc) -> log_line(Acc, Kind, Line) end, S, Lines).

%% A logger_fun replaces logging, log_transform included (as MuonTrap
%% documents it): it gets the line as read, made valid UTF-8.
log_line(#s{n = N} = S, Kind, Line) ->
    Text0 = safe_utf8(chomp(Line)),
    Text =
        case maps:get(log_transform, N) of
            T when T =/= undefined, map_get(logger_fun, N) =:= undefined ->
                unicode:characters_to_binary(T(Text0));
            _ ->
                Text0
        end,
    S1 = ready_line(S, Text),
    case {maps:get(logger_fun, N), maps:get(Kind, maps:get(log, N))} of
        {_, none} -> ok;
        {undefined, Level} ->
            logger:log(Level, [maps:get(log_prefix, N), Text], #{corral_stream => Kind});
        {{M, F, A}, _} -> apply(M, F, [Text | A]);
        {Fun, _} -> Fun(Text)
    end,
    S1#s{line_count = S1#s.line_count + 1}.

chomp(<<>>) ->
    <<>>;
chomp(Line) ->
    case binary:last(Line) of
        $\n -> binary:part(Line, 0, byte_size(Line) - 1);
        _ -> Line
    end.

%% Valid UTF-8 as it is; every invalid byte (or truncated sequence at the
%% end) becomes U+FFFD, so that logger and its handlers never see it.
safe_utf8(Bin) ->
    case unicode:characters_to_binary(Bin) of
        Good when is_binary(Good) -> Good;
        _ -> iolist_to_binary(replace_invalid(Bin))
    end.

replace_invalid(<<>>) ->
    [];
replace_invalid(Bin) ->
    case unicode:characters_to_binary(Bin) of
        Good when is_binary(Good) -> [Good];
        {error, Good, <<_, Rest/binary>>} -> [Good, <<16#FFFD/utf8>> | replace_invalid(Rest)];
        {incomplete, Good, _} -> [Good, <<16#FFFD/utf8>>]
    end.

ready_line(#s{ready = {line, MP}} = S, Text) ->
    case re:run(Text, MP, [{capture, none}]) of
        match -> S#s{ready = ready};
        nomatch -> S
    end;
ready_line(S, _) ->
    S.

%% Runs in init/1: handles the port's messages (logging them) until the
%% check passes, the program exits or the time is up.
await_ready(#s{ready = none} = S) ->
    {ok, S};
await_ready(#s{ready = Check, n = #{ready_timeout := T}} = S) ->
    ready_loop(S, Check, erlang:monotonic_time(millisecond) + T).

ready_loop(#s{ready = ready} = S, _, _) ->
    {ok, S#s{ready = none}};
ready_loop(#s{port = Port} = S, Check, Deadline) ->
    Left = max(Deadline - erlang:monotonic_time(millisecond), 0),
    Wait =
        case Check of
            {line, _} -> Left;
            _ -> min(Left, ?POLL_MS)
        end,
    receive
        {Port, Msg} ->
            case port_message(Msg, S) of
                {cont, S1} ->
                    ready_loop(S1, Check, Deadline);
                {exit, Terminal, S1} ->
                    {error, {exited_before_ready, corral:status(Terminal)}, S1#s{port = undefined}}
            end
    after Wait ->
        case poll(Check, Deadline) of
            true ->
                ready_loop(S#s{ready = ready}, Check, Deadline);
            false ->
                case erlang:monotonic_time(millisecond) >= Deadline of
                    true -> {error, timeout_error(S), S};
                    false -> ready_loop(S, Check, Deadline)
                end
        end
    end.

poll({tcp, Host, Port}, Deadline) ->
    Left = max(Deadline - erlang:monotonic_time(millisecond), 1),
    case gen_tcp:connect(Host, Port, [], min(Left, 1000)) of
        {ok, Socket} ->
            gen_tcp:close(Socket),
            true;
        {error, _} ->
            false
    end;
poll({call, Fun}, _) ->
    try
        lists:member(Fun(), [true, ok])
    catch
        _:_ -> false
    end;
poll({line, _}, _) ->
    false.

timeout_error(#s{ready = Check, n = #{ready_timeout := T}}) ->
    Described =
        case Check of
            {line, _} -> line;
            {tcp, _, _} -> Check;
            {call, Fun} -> Fun
        end,
    {ready_timeout, Described, T}.

%% Stops the program and logs what it still writes until its whole tree is
%% gone.
stop_program(#s{port = undefined}) ->
    ok;
stop_program(S) ->
    _ = corral:request_stop(S#s.port),
    drain(S).

drain(#s{port = Port} = S) ->
    receive
        {Port, Msg} ->
            case port_message(Msg, S) of
                {cont, S1} -> drain(S1);
                {exit, _, _} -> ok
            end
    end.
