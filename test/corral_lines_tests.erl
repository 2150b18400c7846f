-module(corral_lines_tests).

-include_lib("eunit/include/eunit.hrl").

%% Feed the chunks one after another, then flush: every element returned.
run(Chunks, Max) ->
    {Lines, State} = lists:foldl(
        fun(Chunk, {Acc, S0}) ->
            {Ls, S1} = corral_lines:feed(Chunk, S0),
            {Acc ++ Ls, S1}
        end,
        {[], corral_lines:new(Max)},
        Chunks
    ),
    {Last, Flushed} = corral_lines:flush(State),
    ?assertEqual(0, corral_lines:pending_bytes(Flushed)),
    Lines ++ Last.

lines_keep_their_newline_test() ->
    ?assertEqual([<<"a\n">>, <<"bc\n">>, <<"\n">>], run([<<"a\nbc\n\n">>], 10)).

last_line_without_newline_comes_at_flush_test() ->
    S0 = corral_lines:new(10),
    {Lines, S1} = corral_lines:feed(<<"one\ntw">>, S0),
    ?assertEqual([<<"one\n">>], Lines),
    ?assertEqual(2, corral_lines:pending_bytes(S1)),
    ?assertEqual({[<<"tw">>], corral_lines:new(10)}, corral_lines:flush(S1)),
    %% Nothing pending: flush returns nothing.
    ?assertMatch({[], _}, corral_lines:flush(corral_lines:new(10))).

line_split_across_chunks_test() ->
    ?assertEqual(
        [<<"hello world\n">>, <<"next\n">>],
        run([<<"hel">>, <<"lo ">>, <<>>, <<"world">>, <<"\nne">>, <<"xt\n">>], 100)
    ).

newline_alone_in_a_chunk_test() ->
    ?assertEqual([<<"abc\n">>, <<"d">>], run([<<"abc">>, <<"\n">>, <<"d">>], 100)).

long_line_comes_in_pieces_of_max_test() ->
    ?assertEqual(
        [<<"abcd">>, <<"efgh">>, <<"ij\n">>, <<"k\n">>],
        run([<<"abcdefghij\nk\n">>], 4)
    ).

long_line_across_chunks_test() ->
    ?assertEqual(
        [<<"abcd">>, <<"efgh">>, <<"ij\n">>],
        run([<<"ab">>, <<"cdef">>, <<"g">>, <<"hij\n">>], 4)
    ).

%% The maximum counts the text, not the newline, as open_port's {line, L}.
line_of_exactly_max_is_whole_test() ->
    ?assertEqual([<<"abcd\n">>], run([<<"abcd\n">>], 4)),
    ?assertEqual([<<"abcd\n">>], run([<<"abcd">>, <<"\n">>], 4)),
    ?assertEqual([<<"abcd">>, <<"e\n">>], run([<<"abcd">>, <<"e\n">>], 4)),
    ?assertEqual([<<"abcd">>], run([<<"abcd">>], 4)).

held_bytes_are_bounded_by_max_test() ->
    S0 = corral_lines:new(8),
    {Pieces, S1} = corral_lines:feed(binary:copy(<<"x">>, 1000), S0),
    ?assertEqual(124, length(Pieces)),
    ?assert(lists:all(fun(P) -> P =:= binary:copy(<<"x">>, 8) end, Pieces)),
    ?assertEqual(8, corral_lines:pending_bytes(S1)).

default_max_is_65536_test() ->
    {Pieces, S} = corral_lines:feed(binary:copy(<<"y">>, 65537), corral_lines:new()),
    ?assertEqual([binary:copy(<<"y">>, 65536)], Pieces),
    ?assertEqual(1, corral_lines:pending_bytes(S)).

bad_max_test() ->
    ?assertError({badarg, {max_line_length, 0}}, corral_lines:new(0)),
    ?assertError({badarg, {max_line_length, x}}, corral_lines:new(x)).

%% However the input is cut into chunks, the elements are the same, and
%% they add up to the input byte for byte.
any_chunking_gives_the_same_lines_test() ->
    rand:seed(exsss, {1, 2, 3}),
    Alphabet = <<"ab\n">>,
    lists:foreach(
        fun(_) ->
            Input = <<
                <<(binary:at(Alphabet, rand:uniform(3) - 1))>>
             || _ <- lists:seq(1, rand:uniform(200))
            >>,
            Max = rand:uniform(12),
            Whole = run([Input], Max),
            ?assertEqual(Input, iolist_to_binary(Whole)),
            ?assertEqual(Whole, run(chunks(Input), Max)),
            ?assertEqual(Whole, run([<<B>> || <<B>> <= Input], Max)),
            lists:foreach(
                fun(Line) ->
                    Text = binary:part(Line, 0, byte_size(Line) - ends_nl(Line)),
                    ?assert(byte_size(Text) =< Max),
                    ?assertEqual(nomatch, binary:match(Text, <<"\n">>))
                end,
                Whole
            )
        end,
        lists:seq(1, 500)
    ).

ends_nl(Line) ->
    case binary:last(Line) of
        $\n -> 1;
        _ -> 0
    end.

chunks(<<>>) ->
    [];
chunks(Bin) ->
    N = rand:uniform(byte_size(Bin) + 1) - 1,
    <<Chunk:N/binary, Rest/binary>> = Bin,
    [Chunk | chunks(Rest)].
