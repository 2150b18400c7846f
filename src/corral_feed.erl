%% @doc Feeds a child's stdin: the one feeder of corral:cmd/3 and of
%% corral_stream (and of any owner of a port that takes `input').
%%
%% {@link start/3} takes the `input' of a {@link corral_opts:normalized()}
%% map. Small data (up to 512 KiB) is queued in the driver by the owner
%% itself: the driver takes it without suspending anyone. Larger data and
%% input funs run in a helper process, so that the owner keeps reading
%% output while the driver's stdin queue is full (a write then suspends the
%% helper). stdin is closed after the input, or at once without input.
%%
%% The helper is linked to the owner, so that it dies with it, and it never
%% exits abnormally itself: when the input fun raises, the owner gets
%% `{Ref, input_failed, Class, Reason, Stack}' and should re-raise it
%% (see {@link refs/1}). The owner forwards the port's
%% `{stdin_error, Errno}' with {@link stdin_error/2}, so that the sink
%% returns it to the fun.
-module(corral_feed).

-export([start/3, refs/1, down/1, stdin_error/2, finish/1, stop/1]).

-export_type([feeder/0]).

%% Inputs up to this size are queued in the driver directly by the owner;
%% larger ones are fed by a helper process.
-define(DIRECT_INPUT_MAX, 524288).

-record(feeder, {
    pid :: undefined | pid(),
    mref :: undefined | reference(),
    ref :: reference()
}).

-opaque feeder() :: #feeder{}.

%% @doc Starts feeding `Input' to `Port''s stdin. With `IgnoreEpipe' the
%% sink returns `ok' (and drops the bytes) after the child closed its stdin.
-spec start(port(), corral_opts:input(), boolean()) -> feeder().
start(Port, none, _IgnoreEpipe) ->
    _ = corral:close_stdin(Port),
    #feeder{ref = make_ref()};
start(Port, {data, Data}, IgnoreEpipe) ->
    case iolist_size(Data) =< ?DIRECT_INPUT_MAX of
        true ->
            _ = corral:write(Port, Data),
            _ = corral:close_stdin(Port),
            #feeder{ref = make_ref()};
        false ->
            start(Port, {sink, fun(Sink) -> Sink(Data) end}, IgnoreEpipe)
    end;
start(Port, {call, Fun}, IgnoreEpipe) ->
    helper(Port, fun(_Sink) -> Fun(Port) end, IgnoreEpipe);
start(Port, {sink, Fun}, IgnoreEpipe) ->
    helper(Port, Fun, IgnoreEpipe).

helper(Port, Fun, IgnoreEpipe) ->
    Owner = self(),
    Ref = make_ref(),
    {Pid, MRef} = spawn_opt(
        fun() -> run(Owner, Port, Ref, Fun, IgnoreEpipe) end, [link, monitor]
    ),
    #feeder{pid = Pid, mref = MRef, ref = Ref}.

run(Owner, Port, Ref, Fun, IgnoreEpipe) ->
    Sink = fun(Data) -> sink(Port, Ref, IgnoreEpipe, Data) end,
    try Fun(Sink) of
        _ -> corral:close_stdin(Port)
    catch
        Class:Reason:Stack -> Owner ! {Ref, input_failed, Class, Reason, Stack}
    end.

sink(Port, Ref, IgnoreEpipe, Data) ->
    case stdin_error(Ref) of
        undefined -> corral:write(Port, Data);
        epipe when IgnoreEpipe -> ok;
        Errno -> {error, Errno}
    end.

%% The helper keeps the stdin error the owner forwarded, so that every later
%% write returns it.
stdin_error(Ref) ->
    case get({corral_stdin_error, Ref}) of
        undefined ->
            receive
                {Ref, stdin_error, Errno} ->
                    put({corral_stdin_error, Ref}, Errno),
                    Errno
            after 0 -> undefined
            end;
        Errno ->
            Errno
    end.

%% @doc The references an owner matches in its receive loop:
%% `{Ref, input_failed, Class, Reason, Stack}' (re-raise it) and
%% `{'DOWN', MRef, process, _, _}' (the helper is done: call {@link down/1}).
%% `MRef' is `undefined' when there is no helper.
-spec refs(feeder()) -> {reference(), reference() | undefined}.
refs(#feeder{ref = Ref, mref = MRef}) -> {Ref, MRef}.

%% @doc The feeder after its helper's 'DOWN' message was received.
-spec down(feeder()) -> feeder().
down(#feeder{pid = Pid} = F) when is_pid(Pid) ->
    unlink(Pid),
    F#feeder{pid = undefined, mref = undefined};
down(F) ->
    F.

%% @doc Tells the helper (if any) that the child closed its stdin.
-spec stdin_error(feeder(), atom()) -> ok.
stdin_error(#feeder{pid = Pid, ref = Ref}, Errno) when is_pid(Pid) ->
    Pid ! {Ref, stdin_error, Errno},
    ok;
stdin_error(_, _) ->
    ok.

%% @doc The child has exited while the helper may still be writing: let it
%% see `{error, closed}' in its sink and end by itself, for a moment, then
%% stop it. A failure it reports meanwhile is dropped (the child is gone).
-spec finish(feeder()) -> ok.
finish(#feeder{pid = Pid, mref = MRef, ref = Ref} = F) when is_pid(Pid) ->
    Pid ! {Ref, stdin_error, closed},
    receive
        {'DOWN', MRef, process, Pid, _} ->
            unlink(Pid),
            flush(Ref)
    after 100 ->
        stop(F)
    end;
finish(F) ->
    stop(F).

%% @doc Stops the helper at once, if it still runs, and drops what it sent.
-spec stop(feeder()) -> ok.
stop(#feeder{pid = Pid, mref = MRef, ref = Ref}) when is_pid(Pid) ->
    unlink(Pid),
    exit(Pid, kill),
    erlang:demonitor(MRef, [flush]),
    flush(Ref);
stop(#feeder{ref = Ref}) ->
    flush(Ref).

flush(Ref) ->
    receive
        {Ref, input_failed, _, _, _} -> ok
    after 0 -> ok
    end.
