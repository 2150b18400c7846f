%% @doc A child's cgroups, read and written from the VM: the statistics
%% keyed by cgroup v2 interface file names (v1 values translated to them),
%% and `cgget'/`cgset' of one interface file.
%%
%% The spawner makes the leaves; the driver knows their directories from
%% the spawner's `Fds' frame (corral:cgroup_dirs/1). A child has a v2 leaf
%% where the host gives the spawner a v2 tree, and a v1 leaf in each v1
%% hierarchy that holds a controller of its `cgroup' options.
-module(corral_cgroup).

-export([stats/1, get/2, set/3, check_file/1]).
-export_type([dirs/0, stats/0]).

%% `v2': the v2 leaf, or `undefined'; `v1': the v1 leaves.
-type dirs() :: #{v2 := binary() | undefined, v1 := [binary()]}.
%% Keyed by v2 file name: "memory.current", "memory.peak", "memory.events",
%% "cpu.stat", "pids.current", "pids.peak", "cpu.pressure",
%% "memory.pressure", "io.pressure" (each only where the child's groups
%% have it). Flat-keyed files are maps of integers, pressure files maps of
%% "some"/"full" to maps, single values integers (or `<<"max">>').
-type stats() :: #{binary() => term()}.

-define(V2_STATS, [
    <<"memory.current">>,
    <<"memory.peak">>,
    <<"memory.events">>,
    <<"cpu.stat">>,
    <<"pids.current">>,
    <<"pids.peak">>,
    <<"cpu.pressure">>,
    <<"memory.pressure">>,
    <<"io.pressure">>
]).

%% @doc The statistics of the child's groups; `#{}' without any.
-spec stats(dirs()) -> stats().
stats(#{v2 := V2, v1 := V1}) ->
    FromV2 =
        case V2 of
            undefined ->
                #{};
            _ ->
                maps:from_list([
                    {F, parse(F, Text)}
                 || F <- ?V2_STATS, {ok, Text} <- [file:read_file(filename:join(V2, F))]
                ])
        end,
    lists:foldl(fun(D, Acc) -> maps:merge(v1_stats(D), Acc) end, FromV2, V1).

%% v1 files in v2 terms. Where v2 has the same statistic, v2's wins
%% (maps:merge above), except cpu.stat, whose v1 throttling keys are added.
v1_stats(D) ->
    Read = fun(F) ->
        case file:read_file(filename:join(D, F)) of
            {ok, T} -> {ok, string:trim(T)};
            _ -> error
        end
    end,
    Int = fun(F) ->
        case Read(F) of
            {ok, T} -> [binary_to_integer(T)];
            error -> []
        end
    end,
    Mem =
        case Int(<<"memory.usage_in_bytes">>) of
            [Current] ->
                Events0 = #{<<"max">> => hd(Int(<<"memory.failcnt">>) ++ [0])},
                Events =
                    case Read(<<"memory.oom_control">>) of
                        {ok, T} -> maps:merge(Events0, maps:with([<<"oom_kill">>], flat(T)));
                        error -> Events0
                    end,
                maps:merge(
                    #{<<"memory.current">> => Current, <<"memory.events">> => Events},
                    peak(<<"memory.peak">>, Int(<<"memory.max_usage_in_bytes">>))
                );
            [] ->
                #{}
        end,
    Pids =
        case Int(<<"pids.current">>) of
            [P] -> maps:merge(#{<<"pids.current">> => P}, peak(<<"pids.peak">>, Int(<<"pids.peak">>)));
            [] -> #{}
        end,
    Cpu =
        case Read(<<"cpu.stat">>) of
            {ok, CT} ->
                C = flat(CT),
                Usage =
                    case Int(<<"cpuacct.usage">>) of
                        [Ns] -> #{<<"usage_usec">> => Ns div 1000};
                        [] -> #{}
                    end,
                Throttled =
                    case C of
                        #{<<"throttled_time">> := Ns2} -> #{<<"throttled_usec">> => Ns2 div 1000};
                        _ -> #{}
                    end,
                Stat = maps:merge(maps:without([<<"throttled_time">>], C), maps:merge(Usage, Throttled)),
                #{<<"cpu.stat">> => Stat};
            error ->
                #{}
        end,
    maps:merge(maps:merge(Mem, Pids), Cpu).

peak(Key, [V]) -> #{Key => V};
peak(_, []) -> #{}.

parse(File, Text) ->
    case binary:match(File, <<"pressure">>) of
        nomatch ->
            case binary:match(Text, <<" ">>) of
                nomatch -> value(string:trim(Text));
                _ -> flat(Text)
            end;
        _ ->
            maps:from_list([
                {Kind, maps:from_list([pressure_field(F) || F <- Fields])}
             || Line <- lines(Text), [Kind | Fields] <- [string:lexemes(Line, " ")]
            ])
    end.

pressure_field(F) ->
    [K, V] = binary:split(F, <<"=">>),
    case binary:match(V, <<".">>) of
        nomatch -> {K, binary_to_integer(V)};
        _ -> {K, binary_to_float(V)}
    end.

%% "key value" lines.
flat(Text) ->
    maps:from_list([{K, value(V)} || Line <- lines(Text), [K, V] <- [string:lexemes(Line, " ")]]).

lines(Text) -> string:lexemes(Text, "\n").

value(V) ->
    try
        binary_to_integer(V)
    catch
        error:badarg -> V
    end.

%% @doc An interface file name: not empty, no '/', no "..".
-spec check_file(term()) -> {ok, binary()} | {error, {bad_cgroup_file, term()}}.
check_file(F) ->
    case catch unicode:characters_to_binary(F) of
        B when is_binary(B), B =/= <<>> ->
            case binary:match(B, [<<"/">>, <<"..">>, <<0>>]) of
                nomatch -> {ok, B};
                _ -> {error, {bad_cgroup_file, F}}
            end;
        _ ->
            {error, {bad_cgroup_file, F}}
    end.

%% @doc Reads one interface file of the child's groups: of the v2 leaf when
%% it has the file, else of the first v1 leaf that has it.
-spec get(dirs(), term()) -> {ok, binary()} | {error, term()}.
get(Dirs, F) ->
    with_file(Dirs, F, fun(Path) -> file:read_file(Path) end).

%% @doc Writes one interface file of the child's groups (found as get/2 does).
-spec set(dirs(), term(), iodata() | integer()) -> ok | {error, term()}.
set(Dirs, F, V) when is_integer(V) -> set(Dirs, F, integer_to_binary(V));
set(Dirs, F, V) ->
    with_file(Dirs, F, fun(Path) -> file:write_file(Path, V, [raw]) end).

with_file(#{v2 := V2, v1 := V1}, F, Fun) ->
    case check_file(F) of
        {ok, B} ->
            Paths = [filename:join(D, B) || D <- [V2 || V2 =/= undefined] ++ V1],
            case [P || P <- Paths, filelib:is_regular(P)] of
                [Path | _] -> Fun(Path);
                [] -> {error, {enoent, B}}
            end;
        Error ->
            Error
    end.
